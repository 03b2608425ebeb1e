"""A few independent calls made at the same time (one thread each), waited for together.

For read-only checks against several systems, and for independent writes such as one address per
prefix: the operator waits for the slowest answer, not for their sum. Every call runs to its end
before :func:`gather` or :func:`map_all` returns or raises, even on Ctrl+C, so a write made in a thread
is on the run's journal and undo stack before anything rolls back. Failures are raised together, as an
:class:`ExceptionGroup` holding each call's exception in the calls' order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")
A = TypeVar("A")


def gather(into: Callable[..., T], /, **calls: Callable[[], object]) -> T:
    """Make every call at the same time and return ``into(name=result, ...)``, one keyword per call.

    E.g. ``gather(Checked, placement=ask_ganeti, netbox=ask_netbox)``: results are named, never unpacked
    by position. Raises ExceptionGroup (after every call ended) when one or more calls raised.
    """
    names = list(calls)
    results = _together([calls[name] for name in names], "gather")
    return into(**dict(zip(names, results, strict=True)))


def map_all(function: Callable[[A], R], items: Sequence[A]) -> list[R]:
    """``[function(item) for item in items]`` made at the same time; failures as :func:`gather`."""
    return _together([partial(function, item) for item in items], "map")


def _together(calls: list[Callable[[], Any]], what: str) -> list[Any]:
    """Each call in its own thread; their results in order once all ended, or ExceptionGroup of the failures."""
    if not calls:
        return []
    pool = ThreadPoolExecutor(max_workers=len(calls), thread_name_prefix=f"parallel-{what}")
    futures: list[Future[Any]] = []
    try:
        futures = [pool.submit(call) for call in calls]
        wait(futures)
    except KeyboardInterrupt:
        wait(futures)  # the calls in flight end first (a second Ctrl+C stops waiting): their writes are recorded
        raise
    finally:
        pool.shutdown(wait=False)
    errors = [error for future in futures if (error := future.exception()) is not None]
    if errors:
        # an ExceptionGroup, unless a call raised a BaseException such as SystemExit
        raise BaseExceptionGroup(f"{len(errors)} of {len(calls)} calls made at the same time failed", errors)
    return [future.result() for future in futures]
