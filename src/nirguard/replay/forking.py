"""Work in processes forked from this one: each child sees the parent's state as it is.

Plain processes and pipes, no pool: the parent starts no thread, so forking
stays safe, and a child forked after the history of a pass starts its
attack week from that state with nothing copied or restored.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

__all__ = ["can_fork", "forked", "start_child", "wait_child"]

_T = TypeVar("_T")


def can_fork() -> bool:
    """Whether work can run in forked processes here (a platform that forks, no thread)."""
    import multiprocessing

    return (
        "fork" in multiprocessing.get_all_start_methods()
        and threading.active_count() == 1
        and sys.platform != "darwin"
    )


def _child(work: Callable[[str], Any], task: str, send: Any) -> None:
    try:
        send.send(work(task))
    except Exception as exc:  # the parent re-raises it
        send.send(RuntimeError(f"replay week failed: {type(exc).__name__}: {exc}"))
    finally:
        send.close()


def start_child(work: Callable[[str], Any], task: str) -> tuple[Any, Any]:
    """Run ``work(task)`` in a forked process; the process and the end of its pipe."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(work, task, send), daemon=False)
    child.start()
    send.close()
    return child, receive


def wait_child(child: Any, receive: Any) -> Any:
    """What a forked child sent back (its result, or the exception it met), once it ended."""
    try:
        answer = receive.recv()
    except EOFError:
        answer = RuntimeError("a replay process ended without an answer")
    receive.close()
    child.join()
    return answer


def forked(work: Callable[[str], _T], tasks: list[str], jobs: int) -> Iterator[_T]:
    """``work(task)`` for each task, each in a process forked for it, ``jobs`` at a time.

    Raises:
        BaseException: what a child met (the others are stopped).
    """
    from multiprocessing.connection import wait

    todo = list(tasks)
    running: dict[Any, Any] = {}
    while todo or running:
        while todo and len(running) < jobs:
            child, receive = start_child(work, todo.pop(0))
            running[receive] = child
        for ready in wait(list(running)):
            answer = wait_child(running.pop(ready), ready)
            if isinstance(answer, BaseException):
                for other, proc in running.items():
                    proc.terminate()
                    other.close()
                raise answer
            yield answer
