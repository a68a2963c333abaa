"""A fetch looks for no module: httpcore imports `sniffio` on every request to learn which async
library runs it, and when sniffio is missing (anyio stopped depending on it) each request
searched sys.path for it again, a few percent of a worker's CPU in bench/scale. sniffio is a
dependency now; this proves requests no longer search."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from bot.sample_site import Response, SampleSite
from feeds.fetch import FetchLimits, fetch, make_client

LIMITS = FetchLimits(connect_timeout=2, read_timeout=5, total_timeout=10)


class ImportWatch(importlib.abc.MetaPathFinder):
    """Records every module name Python searches for (a found module is cached in sys.modules
    and never searched again)."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        self.searched.append(fullname)
        return None  # let the real finders answer


async def test_repeated_fetches_search_for_no_module() -> None:
    with SampleSite() as site:
        site.route("/feed", lambda _: Response(body=b"<rss/>"))
        async with make_client("wirewatch-test", LIMITS) as client:
            await fetch(client, site.url("/feed"), limits=LIMITS)  # first use may import
            watch = ImportWatch()
            sys.meta_path.insert(0, watch)
            try:
                for _ in range(5):
                    await fetch(client, site.url("/feed"), limits=LIMITS)
            finally:
                sys.meta_path.remove(watch)
    assert watch.searched == []
