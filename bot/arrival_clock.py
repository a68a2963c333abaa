"""When a request's bytes reached this host, by the kernel's clock.

The loopback site measures the shortest gap between two requests to one host, which is what a real
site's politeness check sees: when the bytes arrived. bench/ingest runs hundreds of sites in one
busy process beside a CPU-bound client, and there a handler thread can get to a request up to a
second after it arrived; a clock read in the handler then squeezes two requests that arrived 1 s
apart to a few milliseconds, and the benchmark reports violations the client never committed.

On Linux, the socket option SO_TIMESTAMPNS makes every read hand back the time the kernel received
the data (an SCM_TIMESTAMPNS control message: a struct timespec, CLOCK_REALTIME). No library reads
it for a buffered stream, hence this small reader. TCP gives the time of the latest segment a read
consumed, so data that piled up unread reports when its last piece arrived. Where the option is
missing (non-Linux) or a read carries no timestamp, the reader falls back to `time.time()` at the
read: the same clock, only as late as the reading thread.
"""

from __future__ import annotations

import io
import socket
import struct
import sys
import time
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["ArrivalReader", "enable_timestamps"]

SO_TIMESTAMPNS: Final = 35
"""Linux's value on the common architectures (asm-generic, x86, arm); Python does not export it.
It is also the SCM_TIMESTAMPNS control message type."""
_TIMESPEC: Final = struct.Struct("@ll")
_ANCILLARY_SPACE: Final = socket.CMSG_SPACE(_TIMESPEC.size) if hasattr(socket, "CMSG_SPACE") else 0


def enable_timestamps(sock: socket.socket) -> bool:
    """Ask the kernel to stamp data received on `sock` (set on a listening socket, accepted
    connections inherit it); False where the platform cannot, and reads then use the fallback."""
    if not sys.platform.startswith("linux") or not _ANCILLARY_SPACE:
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        return False
    return True


class ArrivalReader(io.RawIOBase):
    """A raw stream over a connected socket that remembers when the data it reads arrived.

    `arrival()` is the time of the first read since the last `reset()` (the caller resets after
    each request, so it is when that request's first bytes came in). Data already buffered from an
    earlier read (pipelined requests) arrived with that read, so without a new read it answers the
    latest read's time. The socket's timeout applies to every read; closing the reader leaves the
    socket open (its owner closes it), as `socket.makefile` does.
    """

    def __init__(self, sock: socket.socket) -> None:
        super().__init__()
        self._sock = sock
        self._first: float | None = None
        self._latest: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        if _ANCILLARY_SPACE:
            count, ancillary, _flags, _address = self._sock.recvmsg_into([buffer], _ANCILLARY_SPACE)
            stamp = _kernel_time(ancillary)
        else:
            count, stamp = self._sock.recv_into(buffer), None
        if count:
            now = stamp if stamp is not None else time.time()
            if self._first is None:
                self._first = now
            self._latest = now
        return count

    def arrival(self) -> float | None:
        """When the current request's bytes arrived (seconds since the epoch); None before any
        data was read."""
        return self._first if self._first is not None else self._latest

    def reset(self) -> None:
        """Start timing the next request: called once a request has been answered."""
        self._first = None


def _kernel_time(ancillary: list[tuple[int, int, bytes]]) -> float | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _TIMESPEC.size:
            seconds: int
            nanoseconds: int
            seconds, nanoseconds = _TIMESPEC.unpack_from(data)
            return seconds + nanoseconds / 1e9
    return None
