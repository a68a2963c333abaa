"""The feed server under test, in its own process: ``python -m bench.serve.feed_server DIR PORT``.

It serves the documents the benchmark published into DIR through the very code path of
``wirewatch run`` (``bot.server.make_app`` on ``bot.server.FeedServer``, on the event loop of
``bot.event_loop``), from a catalog holding the same bytes nginx serves from disk. A process of its
own, so that the load generator and the server never share an interpreter. Stops on SIGTERM or
SIGINT.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path

from bot import event_loop
from bot.server import FeedCatalog, FeedServer, RenderedFeed, make_app

PUBLISHED = datetime(2026, 3, 1, tzinfo=UTC)


def load_catalog(directory: Path) -> FeedCatalog:
    """Every ``*.atom`` under ``directory`` at the path the publisher would serve it at."""
    catalog = FeedCatalog()
    for file in sorted(directory.rglob("*.atom")):
        relative = file.relative_to(directory).as_posix()
        path = relative if relative.startswith("sources/") else f"feeds/{relative}"
        catalog.put(RenderedFeed.of(path, file.stem, file.read_bytes(), PUBLISHED))
    return catalog


async def serve(directory: Path, port: int) -> None:
    catalog = load_catalog(directory)
    server = FeedServer(make_app(catalog, public_url=f"http://127.0.0.1:{port}"), "127.0.0.1", port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    print("ready", flush=True)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    event_loop.run(serve(Path(sys.argv[1]), int(sys.argv[2])))
