"""The console in a real browser (Debian's chromium, driven by Playwright), as an officer uses it.

The console runs in uvicorn, mounted at ``/security`` in a portal app, with the standalone
console's authorization (an officers file, HTTP Basic). Nothing downloads a browser: the
tests use ``/usr/bin/chromium`` (``apt-get install chromium``); without it they skip, unless
``CI`` is set, where a missing browser fails the run.

With ``NIRGUARD_SCREENSHOTS=DIR`` the flows save a screenshot of each page into DIR
(``docs/scripts/console_screenshots.py`` does this for the docs).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from nirguard import nir
from nirguard.console import Console
from nirguard.console._officers import OfficersFile
from tests.conftest import assert_no_nir
from tests.console_world import NIR_IN_TEXT, STOLEN, World, full_world

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = os.environ.get("NIRGUARD_TEST_CHROMIUM", "/usr/bin/chromium")
SHOTS = os.environ.get("NIRGUARD_SCREENSHOTS")

if not shutil.which(CHROMIUM):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI needs a browser at {CHROMIUM}: apt-get install chromium")
    pytest.skip(f"no browser at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Served:
    """The world, its console in uvicorn on a free port, and the officers' tokens."""

    def __init__(self, world: World, officers: OfficersFile, tokens: dict[str, str]) -> None:
        import uvicorn

        self.world = world
        self.tokens = tokens
        console = Console(world.store, authorize=officers.authorize, guard=world.guard, keys=world.key,
                          clock=world.clock, challenge='Basic realm="nirguard console"')  # fmt: skip
        portal = Starlette(routes=[Mount("/security", app=console)])
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}/security"
        config = uvicorn.Config(
            portal, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    officers = OfficersFile(tmp_path_factory.mktemp("console") / "officers")
    tokens = {
        "m.dupont": officers.add("m.dupont", "officer"),
        "j.martin": officers.add("j.martin", "viewer"),
    }
    world = full_world()
    served = Served(world, officers, tokens)
    yield served
    served.stop()
    world.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        yield b
        b.close()


def page_for(browser: Any, served: Served, who: str | None) -> Any:
    options: dict[str, Any] = {"viewport": {"width": 1200, "height": 900}}
    if who is not None:
        options["http_credentials"] = {"username": who, "password": served.tokens[who]}
    context = browser.new_context(**options)
    page = context.new_page()
    page.set_default_timeout(15_000)
    return page


def shot(page: Any, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


def no_nir_shown(page: Any, *known: str) -> None:
    assert_no_nir(page.content(), NIR_IN_TEXT, *known)
    assert_no_nir(page.url, NIR_IN_TEXT, *known)


def test_a_replayed_attack_is_a_case_the_officer_opens_and_unlocks(
    browser: Any, served: Served
) -> None:
    page = page_for(browser, served, "m.dupont")
    errors: list[str] = []
    page.on(
        "console",
        lambda message: (
            errors.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.goto(served.base + "/")
    assert page.url.endswith("/security/cases")
    account = page.locator("#cases tbody.account", has_text=STOLEN)
    [case] = served.world.store.reader.cases_of(STOLEN)  # one incident (two lockouts): one case
    assert account.locator("tr.case").count() == 1
    row = account.locator("tr.case.latest")
    assert row.get_attribute("data-case") == case["case_id"]
    assert "distinct_patients" in row.inner_text() and "open" in row.inner_text()
    shot(page, "cases")
    row.get_by_role("link", name="latest case").click()
    page.wait_for_url(f"**/security/cases/{case['case_id']}")
    timeline = page.locator("#timeline svg").first
    assert timeline.is_visible()
    assert timeline.locator("rect").count() > 15 and timeline.locator("line.baseline").count() == 1
    assert "locked" in page.locator("main").inner_text()
    no_nir_shown(page)
    shot(page, "case")
    page.locator("#case-form select[name=state]").select_option("acknowledged")
    page.locator("#case-form textarea[name=note]").fill("account holder called: not them")
    page.locator("#case-form button").click()
    page.wait_for_load_state()
    assert page.locator("#case-state").inner_text() == "acknowledged"
    page.locator("#unlock-form input[name=reason]").fill("password reset with the GP on the phone")
    page.locator("#unlock-form button").click()
    page.wait_for_url("**/security/locked?done=unlocked")
    assert page.locator("#done").is_visible()
    unlocks = page.locator("#unlocks").inner_text()
    assert "password reset with the GP on the phone" in unlocks and STOLEN in unlocks
    assert not served.world.guard.status(STOLEN).locked
    shot(page, "locked")
    page.goto(served.base + "/portal")
    actions = page.locator("#actions").inner_text()
    assert "unlock" in actions and "case" in actions and "m.dupont" in actions
    shot(page, "portal")
    assert errors == []  # no CSP violation: nothing the pages use is blocked


def test_a_break_glass_grant_is_reviewed(browser: Any, served: Served) -> None:
    page = page_for(browser, served, "m.dupont")
    page.goto(served.base + "/break-glass")
    row = page.locator("#grants tbody tr").first
    assert "ETREAT" in row.inner_text() and "carte vitale [NIR]" in row.inner_text()
    no_nir_shown(page)
    shot(page, "break-glass")
    grant_id = row.get_attribute("id")
    row.locator("select[name=verdict]").select_option("escalate")
    row.locator("input[name=note]").fill("no emergency on record")
    row.locator("button").click()
    page.wait_for_url("**/security/break-glass")
    assert page.locator(f"#{grant_id}").count() == 0
    page.goto(served.base + "/break-glass?show=all")
    assert "escalate" in page.locator(f"#{grant_id}").inner_text()
    with page.expect_download() as download:
        page.get_by_role("link", name="export the last 30 days (CSV)").click()
    text = Path(download.value.path()).read_text("utf-8")
    assert "escalate" in text and "ETREAT" in text
    assert_no_nir(text, NIR_IN_TEXT)


def test_a_patients_lookups_from_a_posted_nir(browser: Any, served: Served) -> None:
    world = served.world
    patient = next(
        p
        for p in world.patients[STOLEN]
        if world.store.reader.lookups_of([world.guard_pseudonym(p)])
    )
    page = page_for(browser, served, "m.dupont")
    page.goto(served.base + "/patient")
    page.locator("input[name=nir]").fill(nir.format(patient))
    page.locator("input[name=reason]").fill("letter from the patient")
    page.locator("#patient-form button").click()
    page.wait_for_load_state()
    assert page.url == served.base + "/patient"
    assert "lookup(s) of this person" in page.locator("#found").inner_text()
    assert STOLEN in page.locator("#lookups").inner_text()
    assert page.locator("input[name=nir]").input_value() == ""
    no_nir_shown(page, patient)
    shot(page, "patient")


def test_nobody_unauthenticated_and_no_form_without_its_token(browser: Any, served: Served) -> None:
    stranger = page_for(browser, served, None)
    with pytest.raises(playwright_api.Error, match="ERR_INVALID_AUTH_CREDENTIALS"):
        stranger.goto(served.base + "/cases")  # the 401 challenge, and nobody to answer it
    response = stranger.context.request.get(served.base + "/cases")
    assert response.status == 401 and response.headers["www-authenticate"].startswith("Basic")
    assert STOLEN not in response.text() and "Sign in" in response.text()
    impostor = browser.new_context(http_credentials={"username": "m.dupont", "password": "guess"})
    assert impostor.request.get(served.base + "/cases").status == 401
    impostor.close()
    viewer = page_for(browser, served, "j.martin")
    viewer.goto(served.base + "/break-glass?show=all")
    assert "officers only" in viewer.content() and "carte vitale" not in viewer.content()
    assert viewer.goto(served.base + "/patient").status == 403
    officer = page_for(browser, served, "m.dupont")
    case = next(c["case_id"] for c in served.world.store.reader.cases(None, 50))
    officer.goto(f"{served.base}/cases/{case}")
    before = served.world.store.reader.case(case)["state"]
    officer.locator("#case-form input[name=csrf]").evaluate("element => element.remove()")
    officer.locator("#case-form select[name=state]").select_option("closed")
    with officer.expect_response(lambda r: r.request.method == "POST") as posted:
        officer.locator("#case-form button").click()
    assert posted.value.status == 403
    assert "token is missing or expired" in officer.content()
    assert served.world.store.reader.case(case)["state"] == before
