"""The console as a client sees it: who gets in, CSRF, headers, no NIR anywhere, each action recorded."""

from __future__ import annotations

import inspect
import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("starlette")
pytest.importorskip("jinja2")

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=".*httpx2")
    from starlette.testclient import TestClient

from starlette.applications import Starlette
from starlette.routing import Mount

from nirguard import SecretKey, nir
from nirguard.console import Console, Officer
from nirguard.errors import ConfigurationError
from tests.conftest import assert_no_nir
from tests.console_world import NIR_IN_TEXT, STOLEN, World, full_world

PAGES = ["/cases", "/locked", "/break-glass", "/patient", "/portal", "/break-glass/export.csv"]


def authorize(request: Any) -> Officer | None:
    who = request.headers.get("x-test-officer")
    if not who:
        return None
    name, _, role = who.partition("/")
    return Officer(name, role)  # type: ignore[arg-type]


OFFICER = {"x-test-officer": "m.dupont/officer"}
VIEWER = {"x-test-officer": "j.martin/viewer"}


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = full_world()
    yield w
    w.store.close()


def client_for(world: World, **options: Any) -> TestClient:
    options.setdefault("nir_searches_per_hour", 5)
    app = Console(world.store, authorize=authorize, guard=world.guard, keys=world.key,
                  clock=world.clock, **options)  # fmt: skip
    return TestClient(app, raise_server_exceptions=True)


@pytest.fixture
def client(world: World) -> TestClient:
    return client_for(world)


def token(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def stolen_case(world: World) -> str:
    return next(
        c["case_id"] for c in world.store.reader.cases(None, 50) if c["practitioner"] == STOLEN
    )


def test_no_console_without_authorize(world: World) -> None:
    with pytest.raises(ConfigurationError):
        Console(world.store, authorize=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("path", [*PAGES, "/cases/anything"])
def test_nobody_gets_in_without_the_portal_saying_so(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert "Case" not in response.text and "k2026" not in response.text


def test_a_failing_or_lying_authorize_lets_nobody_in(world: World) -> None:
    def broken(request: Any) -> Officer:
        raise RuntimeError("session store down")

    async def lying(request: Any) -> Any:
        return {"name": "root", "role": "officer"}

    for auth in (broken, lying, lambda request: True):
        app = Console(world.store, authorize=auth)  # type: ignore[arg-type]
        assert TestClient(app).get("/cases").status_code == 401


def test_every_response_carries_the_strict_headers(client: TestClient) -> None:
    for path in [*PAGES, "/nowhere", "/static/console.css", "/"]:
        response = client.get(path, headers=OFFICER, follow_redirects=False)
        csp = response.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
        assert "script-src" not in csp and "unsafe-inline" not in csp
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["x-content-type-options"] == "nosniff"


def test_no_script_and_no_inline_style_in_any_page(client: TestClient, world: World) -> None:
    for path in [*PAGES[:-1], f"/cases/{stolen_case(world)}"]:
        html = client.get(path, headers=OFFICER).text
        assert (
            "<script" not in html.lower()
            and "style=" not in html.lower()
            and "<style" not in html.lower()
        )
        assert not re.search(r"\son[a-z]+=", html)  # no event handler attributes


def test_a_viewer_reads_but_sees_no_free_text_and_cannot_act(
    client: TestClient, world: World
) -> None:
    html = client.get("/break-glass", headers=VIEWER).text
    assert "ETREAT" in html and "urgences" not in html and "officers only" in html
    assert "<form" not in html
    assert client.get("/patient", headers=VIEWER).status_code == 403
    assert client.get("/break-glass/export.csv", headers=VIEWER).status_code == 403
    officer_page = client.get("/locked", headers=OFFICER).text
    response = client.post("/locked/unlock", headers=VIEWER,
                           data={"csrf": token(officer_page), "practitioner": STOLEN, "reason": "because"})  # fmt: skip
    assert response.status_code == 403
    assert world.guard.status(STOLEN).locked


def test_an_officer_sees_the_free_text_with_the_nir_masked(client: TestClient) -> None:
    html = client.get("/break-glass", headers=OFFICER).text
    assert "urgences: patient inconscient, carte vitale [NIR]" in html
    assert_no_nir(html, NIR_IN_TEXT)


def test_forms_need_the_officers_own_fresh_token(client: TestClient, world: World) -> None:
    case = stolen_case(world)
    page = client.get(f"/cases/{case}", headers=OFFICER).text
    good = token(page)
    other = token(client.get(f"/cases/{case}", headers={"x-test-officer": "x.autre/officer"}).text)
    stamp, mac = good.split(".")
    old = str(int(stamp) - 9 * 3600)
    for bad in (None, "", other, f"{old}.{mac}", f"{stamp}.{'0' * 64}", good + "x"):
        data = {"state": "closed", "note": "no"}
        if bad is not None:
            data["csrf"] = bad
        response = client.post(f"/cases/{case}", headers=OFFICER, data=data)
        assert response.status_code == 403, bad
    cross = client.post(f"/cases/{case}", headers={**OFFICER, "origin": "https://evil.example",
                                                   "sec-fetch-site": "cross-site"},
                        data={"csrf": good, "state": "closed"})  # fmt: skip
    assert cross.status_code == 403
    assert world.store.reader.case(case)["state"] == "open"


def test_a_token_lasts_eight_hours_and_never_comes_from_the_future(world: World) -> None:
    from nirguard.console._security import Csrf

    key = SecretKey.generate("csrf")
    client = client_for(world, csrf_key=key)
    case = stolen_case(world)
    officer = Officer("m.dupont", "officer")
    now = time.time()
    codes = {}
    for label, made in (("7h", now - 7 * 3600), ("9h", now - 9 * 3600), ("future", now + 600)):
        data = {"csrf": Csrf(key).token(officer, now=made), "state": "open", "note": label}
        codes[label] = client.post(f"/cases/{case}", headers=OFFICER, data=data).status_code
    assert codes == {"7h": 200, "9h": 403, "future": 403}
    assert Csrf(key).check(officer, Csrf(SecretKey.generate("other")).token(officer)) is False


def test_case_state_and_note_are_recorded_with_who(world: World, client: TestClient) -> None:
    case = stolen_case(world)  # the world's one case for sure (the attack), whatever ran before
    page = client.get(f"/cases/{case}", headers=OFFICER)
    assert page.status_code == 200
    response = client.post(f"/cases/{case}", headers=OFFICER, follow_redirects=False,
                           data={"csrf": token(page.text), "state": "acknowledged", "note": "called the GP"})  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == f"/cases/{case}"
    row = world.store.reader.case(case)
    assert (row["state"], row["note"], row["updated_by"]) == (
        "acknowledged",
        "called the GP",
        "m.dupont",
    )
    action = world.store.reader.actions(1)[0]
    assert (action["officer"], action["action"], action["target"]) == ("m.dupont", "case", case)
    assert action["reason"] == "acknowledged: called the GP"
    bad = client.post(
        f"/cases/{case}", headers=OFFICER, data={"csrf": token(page.text), "state": "deleted"}
    )
    assert bad.status_code == 400


def test_the_case_page_draws_the_timeline_against_the_accounts_normal(
    client: TestClient, world: World
) -> None:
    html = client.get(f"/cases/{stolen_case(world)}", headers=OFFICER).text
    svg = html[html.index("<svg") : html.index("</svg>")]
    assert svg.count("<rect") > 15  # bars for the ordinary days and the attack day
    assert 'class="baseline"' in svg and "own normal" in svg
    assert "distinct_patients" in html and "locked" in html
    assert_no_nir(html)


def test_patient_search_lists_every_lookup_of_that_person_and_is_recorded(world: World) -> None:
    client = client_for(world)
    patient = next(
        p
        for p in world.patients[STOLEN]
        if world.store.reader.lookups_of([world.guard_pseudonym(p)])
    )
    form = client.get("/patient", headers=OFFICER).text
    assert 'method="post"' in form and 'name="nir"' in form
    response = client.post("/patient", headers=OFFICER,
                           data={"csrf": token(form), "nir": nir.format(patient), "reason": "patient complaint 42"})  # fmt: skip
    assert response.status_code == 200
    expected = len(world.store.reader.lookups_of([world.guard_pseudonym(patient)]))
    assert expected >= 1 and f"{expected} lookup(s) of this person" in response.text
    assert STOLEN in response.text
    assert_no_nir(response.text, patient)
    assert patient not in str(response.url) and nir.format(patient) not in str(response.url)
    action = world.store.reader.actions(1, "nir_search")[0]
    assert action["officer"] == "m.dupont" and action["reason"] == "patient complaint 42"
    assert action["target"] == world.guard_pseudonym(patient)


def test_patient_search_refuses_bad_input_without_echo_and_is_rate_limited(world: World) -> None:
    client = client_for(world, nir_searches_per_hour=3)
    headers = {"x-test-officer": f"limited-{time.time_ns()}/officer"}
    form = client.get("/patient", headers=headers).text
    csrf = token(form)
    nearly = NIR_IN_TEXT[:-1] + "0"
    bad = client.post(
        "/patient", headers=headers, data={"csrf": csrf, "nir": nearly, "reason": "checking"}
    )
    assert bad.status_code == 400 and "not a valid NIR" in bad.text and nearly not in bad.text
    no_reason = client.post(
        "/patient", headers=headers, data={"csrf": csrf, "nir": NIR_IN_TEXT, "reason": ""}
    )
    assert no_reason.status_code == 400
    codes = [
        client.post(
            "/patient",
            headers=headers,
            data={"csrf": csrf, "nir": NIR_IN_TEXT, "reason": "checking"},
        ).status_code
        for _ in range(3)
    ]
    assert codes == [200, 200, 429]  # the invalid search counted too
    # an hour later the officer may search again: only the last hour counts
    other = {"x-test-officer": f"later-{time.time_ns()}/officer"}
    for _ in range(3):
        world.store.record_action(other["x-test-officer"].split("/")[0], "nir_search", None, "old",
                                  when=time.time() - 3700)  # fmt: skip
    again = client.post("/patient", headers=other,
                        data={"csrf": token(client.get("/patient", headers=other).text),
                              "nir": NIR_IN_TEXT, "reason": "checking"})  # fmt: skip
    assert again.status_code == 200


def test_unlock_needs_a_reason_then_lifts_the_lockout_and_is_recorded(
    world: World, client: TestClient
) -> None:
    assert world.guard.status(STOLEN).locked
    page = client.get("/locked", headers=OFFICER).text
    assert STOLEN in page
    csrf = token(page)
    short = client.post(
        "/locked/unlock",
        headers=OFFICER,
        data={"csrf": csrf, "practitioner": STOLEN, "reason": "ok"},
    )
    assert short.status_code == 400 and world.guard.status(STOLEN).locked
    done = client.post("/locked/unlock", headers=OFFICER,
                       data={"csrf": csrf, "practitioner": STOLEN, "reason": "GP called, password reset"})  # fmt: skip
    assert done.status_code == 200 and "The account was unlocked" in done.text
    assert not world.guard.status(STOLEN).locked
    assert "GP called, password reset" in done.text
    action = world.store.reader.actions(1, "unlock")[0]
    assert (action["officer"], action["target"], action["reason"]) == (
        "m.dupont",
        STOLEN,
        "GP called, password reset",
    )
    if {"by", "reason"} <= set(inspect.signature(world.guard.unlock).parameters):
        # contract 4: the guard audits the unlock itself, into the same store
        assert world.store.flush()
        unlocked = [
            e for e in world.store.reader.account_events(STOLEN, 5) if e["outcome"] == "unlocked"
        ]
        assert unlocked and unlocked[0]["actor"] == "m.dupont"
        assert unlocked[0]["note"] == "GP called, password reset"


def test_verdicts_and_the_patient_notification_export(world: World, client: TestClient) -> None:
    grant = world.store.reader.grants(False, 1)[0]
    page = client.get("/break-glass", headers=OFFICER).text
    bad = client.post(
        f"/break-glass/{grant['id']}",
        headers=OFFICER,
        data={"csrf": token(page), "verdict": "maybe"},
    )
    assert bad.status_code == 400
    response = client.post(f"/break-glass/{grant['id']}", headers=OFFICER,
                           data={"csrf": token(page), "verdict": "not_justified", "note": "no emergency that day"})  # fmt: skip
    assert response.status_code == 200
    assert f'id="grant-{grant["id"]}"' not in response.text  # no longer awaiting a verdict
    assert "not justified" in client.get("/break-glass?show=all", headers=OFFICER).text
    export = client.get("/break-glass/export.csv?days=30", headers=OFFICER)
    assert export.headers["content-type"].startswith("text/csv")
    assert "attachment" in export.headers["content-disposition"]
    lines = export.text.strip().splitlines()
    assert lines[0].startswith("time,patient_pseudonym,practitioner,reason_code")
    assert grant["patient"] in lines[1] and "not_justified" in lines[1] and "ETREAT" in lines[1]
    assert "urgences" not in export.text
    assert_no_nir(export.text, NIR_IN_TEXT)
    actions = {a["action"] for a in world.store.reader.actions(5)}
    assert {"verdict", "export"} <= actions


def test_mounted_under_a_prefix_every_link_and_form_keeps_it(world: World) -> None:
    console = Console(
        world.store, authorize=authorize, guard=world.guard, keys=world.key, clock=world.clock
    )
    portal = Starlette(routes=[Mount("/security", app=console)])
    client = TestClient(portal)
    html = client.get("/security/cases", headers=OFFICER).text
    links = re.findall(r'(?:href|action)="([^"]+)"', html)
    assert links and all(link.startswith("/security/") for link in links)
    assert client.get("/security/static/console.css", headers=OFFICER).status_code == 200
    assert (
        client.get("/security/", headers=OFFICER, follow_redirects=False).headers["location"]
        == "/security/cases"
    )


def test_no_nir_in_any_page_nor_log(world: World, client: TestClient) -> None:
    # (the suite's autouse fixture scans every log record of this test for NIRs)
    html = ""
    for path in [
        *PAGES,
        "/cases?state=all",
        "/break-glass?show=all",
        f"/cases/{stolen_case(world)}",
    ]:
        html += client.get(path, headers=OFFICER).text
    form = client.get("/patient", headers=OFFICER).text
    html += client.post("/patient", headers=OFFICER,
                        data={"csrf": token(form), "nir": NIR_IN_TEXT, "reason": "scan"}).text  # fmt: skip
    known = [p for ps in world.patients.values() for p in ps[:5]]
    assert_no_nir(html, NIR_IN_TEXT, *known)


def test_portal_view_shows_rates_and_officer_actions(client: TestClient, world: World) -> None:
    html = client.get("/portal?days=40", headers=OFFICER).text
    assert html.count("<svg") == 3
    total = world.store.reader.count_events()
    assert f"The last 40 days: {total} lookups" in html


def test_a_viewer_cannot_be_made_from_a_bad_role() -> None:
    with pytest.raises(ConfigurationError):
        Officer("x", "admin")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        Officer("", "officer")
    assert SecretKey.generate("k").key_id == "k"


def test_an_accounts_cases_sit_together_latest_first_each_linked_from_the_other() -> None:
    from nirguard.alerts import Alert, case_id
    from tests.console_world import START, make_world

    world = make_world()
    try:
        one, other = "10007777777", "10008888888"
        early, late, between = case_id(one, START), case_id(one, START + 4000), case_id(other, 1)
        for who, case, t in ((one, early, START + 100), (other, between, START + 3000),
                             (one, late, START + 5000)):  # fmt: skip
            world.store.alert(Alert(who, "distinct_patients", {"distinct_patients": 9.0}, t,
                                    3600.0, case=case))  # fmt: skip
        assert world.store.flush()
        client = client_for(world)
        html = client.get("/cases", headers=OFFICER).text
        groups = re.findall(r'<tbody class="account" data-cases="(\d)">(.*?)</tbody>', html, re.S)
        assert [n for n, _ in groups] == ["2", "1"]  # the account with the latest alert first
        rows = re.findall(r'<tr class="case (\w+)" data-case="([^"]+)"', groups[0][1])
        assert rows == [("latest", late), ("earlier", early)]
        assert one in groups[0][1] and other not in groups[0][1] and "2 cases" in groups[0][1]
        page = client.get(f"/cases/{early}", headers=OFFICER).text
        start = page.index('id="other-cases"')
        others = page[start : page.index("</table>", start)]
        assert f'href="/cases/{late}"' in others and early not in others
        assert 'id="other-cases"' not in client.get(f"/cases/{between}", headers=OFFICER).text
    finally:
        world.store.close()
