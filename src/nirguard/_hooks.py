"""The guard's hooks, off the request path: one worker thread per hook, a bounded queue.

A lookup hands what it reports (an audit event, an alert, a notice, a
break-glass grant) to a :class:`Hook` and goes on: the hook's function runs on
a worker thread, so a slow SIEM or a failing sink never changes a decision
nor its timing. What happens when a hook falls behind:

* each hook has its own queue of ``capacity`` items (a slow alert hook never
  holds the audit trail back);
* when the queue is full the item is **dropped, counted and logged**: the
  lookup is never held up (an ``ERROR`` on the ``nirguard.hooks`` logger at
  the first drop and then at most once a minute, with the count; the metric
  ``nirguard.guard.hooks.dropped``); :attr:`Hook.dropped` keeps the total;
* a function that raises is logged once (the exception type only) and the
  next items go on.

``flush()`` waits until everything handed over has run; ``close()`` flushes
and stops the thread (a later item starts it again). At interpreter exit every
hook is flushed (``atexit``); in a child process after ``fork()`` a hook starts
empty, with a thread of its own, so nothing is written twice.

``background=False`` runs the function at once, in the caller (tests, the
command line, the replay: where order and determinism matter more than
timing).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Final

__all__ = ["DEFAULT_CAPACITY", "Hook", "flush_all", "forks"]

_log = logging.getLogger("nirguard.hooks")

DEFAULT_CAPACITY: Final = 65_536
"""Items a hook's queue holds before it drops (about a minute of a busy portal's audit)."""
_DROP_LOG_EVERY: Final = 60.0
_FLUSH_AT_EXIT: Final = 5.0

#: Forks of this process so far (a child counts one more than its parent): a hook made
#: before a fork starts empty in the child. Cheaper than ``os.getpid()`` on every item.
_forks = [0]


def _forked() -> None:
    _forks[0] += 1


os.register_at_fork(after_in_child=_forked)


def forks() -> int:
    """How many forks made this process (0 in the first): what a process-bound
    object compares to tell that it was inherited across a fork."""
    return _forks[0]


class _Channel:
    """What the worker thread shares with its hook (never the hook itself, so that a
    hook nobody holds any more is collected and its thread ends)."""

    __slots__ = ("busy", "idle", "items", "running", "stop", "wake")

    def __init__(self) -> None:
        self.items: deque[Any] = deque()
        self.wake = threading.Event()
        self.stop = False
        self.running = False
        self.busy = False
        self.idle = False  # asleep until woken: the next item must wake it


class _Runner:
    """Runs the hook's function on items; a failure is logged once (its type only)."""

    __slots__ = ("batch", "failed", "func", "prepare", "what")

    def __init__(
        self,
        func: Callable[[Any], object],
        what: str,
        prepare: Callable[[Any], Any] | None,
        batch: Callable[[list[Any]], object] | None,
    ) -> None:
        self.func = func
        self.what = what
        self.prepare = prepare
        self.batch = batch
        self.failed = False

    def one(self, item: Any) -> None:
        try:
            self.func(item if self.prepare is None else self.prepare(item))
        except Exception as exc:  # a hook must never break a lookup
            self.fail(exc)

    def many(self, items: list[Any]) -> None:
        if self.batch is None:
            for item in items:
                self.one(item)
            return
        prepare = self.prepare
        if prepare is not None:  # one item that cannot be prepared never costs the others
            ready = []
            for item in items:
                try:
                    ready.append(prepare(item))
                except Exception as exc:
                    self.fail(exc)
            items = ready
        try:
            self.batch(items)
        except Exception as exc:
            self.fail(exc)

    def fail(self, exc: Exception) -> None:
        if not self.failed:
            self.failed = True
            _log.error(
                "nirguard %s hook failed (%s); further failures are not reported",
                self.what,
                type(exc).__name__,
            )


def _work(channel: _Channel, runner: _Runner, linger: float) -> None:
    items, wake = channel.items, channel.wake
    while True:
        if not items and not channel.stop:
            channel.idle = True
            if not items:  # an item handed over before "idle" was seen would wait forever
                wake.wait()
            wake.clear()
            channel.idle = False
            continue
        channel.busy = True  # before taking anything: flush() waits for "empty and idle"
        while items:
            runner.many([items.popleft() for _ in range(min(len(items), 512))])
        channel.busy = False
        if channel.stop:
            channel.running = False
            return
        if linger:
            # Let items gather: one wake-up and one write per batch, not per lookup
            # (flush() and close() cut it short).
            wake.wait(linger)
            wake.clear()


def _stop(channel: _Channel) -> None:
    channel.stop = True
    channel.wake.set()


class Hook:
    """One of the guard's hooks: ``hook(item)`` hands ``item`` to ``func`` (see the module).

    Args:
        func: the user's or the library's function; ``None`` = no hook.
        what: its name in logs and metrics (``audit``, ``alert``, ...).
        background: run ``func`` on a worker thread (default) or at once.
        capacity: items the queue holds before dropping.
        prepare: turns an item into what ``func`` takes, on the worker (the
            request path then only builds a tuple).
        batch: called with a list of prepared items instead of ``func`` per
            item, when the sink writes many at once (one ``write`` for many lines).
        dropped: called with ``what`` for every dropped item (a metric).
        linger: seconds the worker waits after a batch for more items (the
            audit trail: fewer wake-ups and writes under load); ``0`` delivers
            each item as soon as it comes (alerts).
    """

    __slots__ = (
        "__weakref__",
        "_capacity",
        "_channel",
        "_drop_logged",
        "_forks",
        "_linger",
        "_lock",
        "_note_drop",
        "_runner",
        "background",
        "dropped",
        "what",
    )

    def __init__(
        self,
        func: Callable[[Any], object] | None,
        what: str,
        *,
        background: bool = True,
        capacity: int = DEFAULT_CAPACITY,
        prepare: Callable[[Any], Any] | None = None,
        batch: Callable[[list[Any]], object] | None = None,
        dropped: Callable[[str], None] | None = None,
        linger: float = 0.0,
    ) -> None:
        self.what = what
        self._linger = linger
        self._runner = None if func is None else _Runner(func, what, prepare, batch)
        self.background = background and func is not None
        self._capacity = capacity
        self._note_drop = dropped
        self.dropped = 0
        self._drop_logged = -_DROP_LOG_EVERY
        self._lock = threading.Lock()
        self._forks = _forks[0]
        self._channel = _Channel()
        if self.background:
            _HOOKS.add(self)
            weakref.finalize(self, _stop, self._channel)

    def __bool__(self) -> bool:
        return self._runner is not None

    def __repr__(self) -> str:
        mode = "background" if self.background else "inline"
        return f"Hook({self.what!r}, {mode}, dropped={self.dropped})"

    def __call__(self, item: Any) -> None:
        """Hand ``item`` over (run it now when the hook is inline)."""
        runner = self._runner
        if runner is None:
            return
        if not self.background:
            runner.one(item)
            return
        channel = self._channel
        if self._forks != _forks[0]:
            channel = self._after_fork()
        if len(channel.items) >= self._capacity:
            self._drop()
            return
        channel.items.append(item)
        if not channel.running:
            self._start(channel)
        elif channel.idle:
            channel.wake.set()

    def _start(self, channel: _Channel) -> None:
        with self._lock:
            if channel.running or self._runner is None:
                return
            channel.running = True
            channel.stop = False
            thread = threading.Thread(
                target=_work,
                args=(channel, self._runner, self._linger),
                name=f"nirguard-{self.what}",
                daemon=True,
            )
            thread.start()

    def _drop(self) -> None:
        self.dropped += 1
        if self._note_drop is not None:
            self._note_drop(self.what)
        now = time.monotonic()
        if now - self._drop_logged >= _DROP_LOG_EVERY:
            self._drop_logged = now
            _log.error(
                "nirguard %s hook is behind: its queue of %d is full; %d item(s) dropped so far",
                self.what,
                self._capacity,
                self.dropped,
            )

    def _after_fork(self) -> _Channel:
        # The parent's queue and thread stay the parent's: the child starts empty.
        self._forks = _forks[0]
        self._lock = threading.Lock()
        self._channel = _Channel()
        weakref.finalize(self, _stop, self._channel)
        return self._channel

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every item handed over so far has run; ``False`` on timeout."""
        if not self.background or self._forks != _forks[0]:
            return True
        channel = self._channel
        end = None if timeout is None else time.monotonic() + timeout
        pause = 0.0001
        while channel.items or channel.busy:
            if not channel.running:
                self._start(channel)
            if end is not None and time.monotonic() >= end:
                return False
            channel.wake.set()
            time.sleep(pause)
            pause = min(pause * 2, 0.01)
        return True

    def close(self, timeout: float | None = 5.0) -> bool:
        """Flush, then end the worker thread (the next item starts a new one)."""
        flushed = self.flush(timeout)
        _stop(self._channel)
        return flushed


_HOOKS: weakref.WeakSet[Hook] = weakref.WeakSet()


def flush_all(timeout: float = _FLUSH_AT_EXIT) -> None:
    """Flush every background hook of this process (at exit, ``timeout`` each)."""
    for hook in list(_HOOKS):
        hook.flush(timeout)


atexit.register(flush_all)
