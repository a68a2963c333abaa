"""Where a poll's CPU-heavy steps run: parsing feeds and listings, cleaning article pages.

They run in threads, so that the event loop goes on with other polls meanwhile, but in a pool of
their own with `PARSE_THREADS` threads instead of asyncio's default pool (six threads on two
cores). Python runs one thread's bytecode at a time: with six threads busy parsing, the event
loop waits its turn behind all of them and reads answers late, and fetches can time out against
sites that answered in time. Two threads keep one page going while lxml has released the lock
in the other, and leave the loop a fair share; parsing is CPU-bound, so more threads would not
parse faster. (bench/ingest's cold round, 3,000 article pages to clean: 9 failed feeds with the
default pool, 2 with this one, in one diagnostic run each.)
Blocking input and output (the database) stays in the default pool, where a slow disk does not
hold up parsing.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["PARSE_THREADS", "off_loop"]

PARSE_THREADS = 2
THREAD_NAME = "wirewatch-parse"

P = ParamSpec("P")
T = TypeVar("T")

_POOL = ThreadPoolExecutor(PARSE_THREADS, thread_name_prefix=THREAD_NAME)
"""Its threads start on first use (ThreadPoolExecutor starts them lazily)."""


async def off_loop(func: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """`asyncio.to_thread` on the parsing pool: `func(*args, **kwargs)` in one of its threads,
    with the caller's context variables."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_POOL, call)
