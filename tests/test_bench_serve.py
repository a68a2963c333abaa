"""bench/serve's set-up, checked without the timing: both servers start from the benchmark's own
code, serve the same bytes for every document, and answer their own ETag with a 304.

The figures themselves are measured by `python -m bench.serve` (with wrk), never in the suite.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from bench.serve.__main__ import (
    FEED_PATH,
    check_same_bytes,
    publish_documents,
    running_nginx,
    running_wirewatch,
)
from tests.conftest import require_tool


def test_both_servers_serve_the_same_bytes_and_304(tmp_path: Path) -> None:
    require_tool("nginx")
    documents = tmp_path / "documents"
    size = publish_documents(tmp_path, documents)
    assert size > 100_000  # the 50-entry "all" feed, full text
    with running_wirewatch(documents) as ours, running_nginx(tmp_path, documents) as nginx:
        check_same_bytes(ours, nginx)
        for path in ("/feeds/ukraine.atom", "/sources/world.atom", "/feeds/all/archive/1.atom"):
            assert httpx.get(ours + path).content == httpx.get(nginx + path).content, path
        for base_url in (ours, nginx):
            first = httpx.get(base_url + FEED_PATH)
            assert first.headers["content-type"] == "application/atom+xml; charset=utf-8"
            again = httpx.get(
                base_url + FEED_PATH, headers={"If-None-Match": first.headers["etag"]}
            )
            assert again.status_code == 304, base_url
