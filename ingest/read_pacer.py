"""Read coalescing for the gatherer's venue sockets (``gather.read_window_ms``).

At moderate rates the venue writes many small bursts a second per connection, and each one is a socket read that
wakes the event loop: epoll, the transport, picows' parser set-up and the gatherer's end-of-read work are paid per
read, not per message. After a connection has handled a read, :meth:`ReadPacer.after_read` stops reading its socket
(``pause_reading``) and one timer shared by every connection resumes them all ``window_s`` later. Meanwhile the
kernel buffers what the venue writes, so the next read returns a whole window of messages, and the connections
that were paused together are read in the same loop iteration. What it costs: a message waits in the kernel up to
``window_s`` before it is read (and stamped with its receive time); what it buys: at most one read per connection
and one timer wake-up per window. A socket that already holds more after a read (the gatherer is behind: a read
returns at most its buffer) is not paused, so pacing never caps throughput.

Only transports with ``pause_reading``/``resume_reading`` are paced (the picows client's asyncio transport). Over
TLS the socket's own transport beneath asyncio's SSL layer is paused: pausing the SSL layer alone stops delivery
to the application but the socket is still read (and the loop still woken) for every segment.
"""

from __future__ import annotations

import asyncio
import fcntl
import sys
import termios
from typing import Any, Protocol

__all__ = ["Pausable", "ReadPacer", "pending_bytes", "socket_fd", "socket_transport"]


class Pausable(Protocol):
    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_reading(self) -> bool: ...

    def is_closing(self) -> bool: ...


def pending_bytes(fd: int) -> int:
    """Bytes waiting in socket ``fd``'s receive queue (FIONREAD); 0 when it cannot be asked."""
    try:
        return int.from_bytes(fcntl.ioctl(fd, termios.FIONREAD, _FOUR), sys.byteorder, signed=True)
    except OSError:
        return 0


_FOUR = b"\0\0\0\0"


def socket_fd(transport: Any) -> int:
    """The file descriptor of ``transport``'s socket, -1 when it has none."""
    sock = transport.get_extra_info("socket")
    try:
        return int(sock.fileno()) if sock is not None else -1
    except (OSError, ValueError):
        return -1


def socket_transport(transport: Any) -> Any:
    """The transport that reads the socket: beneath asyncio's SSL layer when there is one (its
    ``_ssl_protocol._transport``, private to asyncio: when absent, ``transport`` itself)."""
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    return inner if inner is not None and hasattr(inner, "pause_reading") else transport


class ReadPacer:
    """Pauses each socket after a read; resumes every paused one together ``window_s`` later (see module doc)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = max(0.0, window_s)
        self.window_started = 0.0  # loop time the current window began (the first pause since the last resume)
        self.windows = 0  # windows opened (timer wake-ups), for tests and metrics
        self.behind = 0  # reads after which the socket held more already (not paused)
        self._paused: list[Pausable] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def enabled(self) -> bool:
        return self.window_s > 0

    def after_read(self, transport: Pausable, fd: int = -1) -> None:
        """``transport`` (socket ``fd``) finished handling one read: stop reading it until the current window ends,
        unless the socket already holds more (a read returns at most the reader's buffer: the gatherer is behind,
        and resting would only let the venue's send buffer grow)."""
        if self.window_s <= 0 or not transport.is_reading() or transport.is_closing():
            return  # off, already paused in this window (TLS: several deliveries per socket read), or closing
        if fd >= 0 and pending_bytes(fd):
            self.behind += 1
            return
        transport.pause_reading()
        self._paused.append(transport)
        if self._timer is None:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.get_running_loop()
            self.window_started = loop.time()
            self.windows += 1
            self._timer = loop.call_at(self.window_started + self.window_s, self.resume_all)

    def resume_all(self) -> None:
        """End the window: every paused socket is read again (the loop's next poll finds their data at once)."""
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
        paused, self._paused = self._paused, []
        for transport in paused:
            if not transport.is_closing():
                transport.resume_reading()

    def stop(self) -> None:
        """No more pacing (shutdown: the venue's close frame must not wait for a window); resume every socket."""
        self.window_s = 0.0
        self.resume_all()

    def forget(self, transport: Pausable) -> None:
        """``transport`` is gone (disconnected): nothing to resume for it."""
        self._paused = [t for t in self._paused if t is not transport]
