"""A response body as decoded chunks, refusing a gzip stream that was cut short.

httpx decodes gzip with zlib and never asks whether the stream reached its end marker, so a body
truncated by a proxy or a dying server (with a Content-Length that matches the truncated bytes)
reads as a shorter, complete body. For a feed that is the worst outcome: the parser salvages the
first entries, the poll "succeeds", its validators are stored, and the next poll gets a 304 for a
feed whose other entries were never read. Here such a body fails like any broken transfer.

Only a body whose one Content-Encoding is gzip is decoded here (what servers send in practice);
every other body goes through httpx's own decoders unchanged.
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

import httpx

__all__ = ["body_chunks"]

_GZIP = ("gzip", "x-gzip")


async def body_chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The decoded body of a streamed response, chunk by chunk.

    Raises httpx.DecodingError (an httpx.HTTPError, sorted as a broken transfer by the fetcher)
    when a gzip body is corrupt or ends before its end marker.
    """
    encoding = response.headers.get("Content-Encoding", "").strip().lower()
    if encoding not in _GZIP:
        async for chunk in response.aiter_bytes():
            yield chunk
        return
    decoder = zlib.decompressobj(zlib.MAX_WBITS | 16)
    async for raw in response.aiter_raw():
        try:
            chunk = decoder.decompress(raw)
        except zlib.error as error:
            raise httpx.DecodingError(f"corrupt gzip body: {error}") from error
        if chunk:
            yield chunk
    if not decoder.eof:
        raise httpx.DecodingError("gzip body cut short (the stream ended before its end marker)")
