"""Two limits uvicorn's HTTP protocol does not set, added to it: the size of a request head and the
time it may take to arrive (slowloris: a connection that sends its headers a byte a minute, or
nothing at all, is otherwise held for ever).

- A request head (request line and headers) over `max_header_bytes` gets 431 and the connection
  is closed, before the parser has stored it.
- A head that has not fully arrived `read_timeout_s` after the connection opened or after the
  first byte of the request (keep-alive) gets 408 and the connection is closed. Idle keep-alive
  connections are closed by uvicorn's own --timeout-keep-alive (5 s).
- A body still arriving when the answer has gone (a 413, an error) is read and dropped as uvicorn
  does, but must end within `read_timeout_s`, else the connection is closed. (Closing at once would
  reset the connection under a client still sending, and it could lose the answer.) The body's own
  deadline, while the app reads it, is the app's (app.py: 408 past `read_timeout_s`).

`limited_protocol(max_header_bytes, read_timeout_s)` returns the protocol class for
`uvicorn.Config(http=...)`; tests bind it to a socket in-process.
"""

from __future__ import annotations

import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _answer(status: int, message: str) -> bytes:
    body = json.dumps({"error": message}).encode()
    return (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % (status, _REASONS[status], len(body)) + body)


def limited_protocol(max_header_bytes: int, read_timeout_s: float) -> type:
    """uvicorn's httptools protocol with a head-size limit and a head deadline (0: none)."""

    class LimitedHttpToolsProtocol(HttpToolsProtocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._in_head = True            # the next bytes belong to a request head
            self._head_bytes = 0
            self._tail = b""                # the last bytes seen, for a terminator split across reads
            self._head_timer = None
            self._drain_timer = None        # the rest of a body already answered
            self._arm()                     # a connection that sends nothing is not held either

        def _arm(self) -> None:
            if read_timeout_s > 0 and self._head_timer is None:
                self._head_timer = self.loop.call_later(read_timeout_s, self._head_timed_out)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, status: int, message: str) -> None:
            self._disarm()
            if not self.transport.is_closing():
                self.logger.info("%s:%s - refused: %s", *(self.client or ("?", 0)), message)
                self.transport.write(_answer(status, message))
                self.transport.close()

        def _head_timed_out(self) -> None:
            self._head_timer = None
            self._refuse(408, f"the request head did not arrive within {read_timeout_s:g} s "
                              f"(--rest_api_read_timeout_in_ms)")

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            if self._in_head:
                seen = self._tail + data
                ends = [i for i in (seen.find(b"\r\n\r\n"), seen.find(b"\n\n")) if i >= 0]
                head = self._head_bytes + (min(ends) - len(self._tail) if ends else len(data))
                if head > max_header_bytes:
                    self._refuse(431, f"the request head (request line and headers) exceeds "
                                      f"{max_header_bytes} bytes")
                    return
                self._head_bytes += len(data)
                self._tail = seen[-3:]
            super().data_received(data)

        # parser callbacks
        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._disarm()
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head, self._head_bytes, self._tail = True, 0, b""
            if self._drain_timer is not None:
                self._drain_timer.cancel()
                self._drain_timer = None

        def on_response_complete(self) -> None:
            cycle = self.cycle
            if (read_timeout_s > 0 and cycle is not None and cycle.response_complete and cycle.more_body
                    and self._drain_timer is None):   # answered before its body ended: bound the rest
                self._drain_timer = self.loop.call_later(read_timeout_s, self.transport.close)
            super().on_response_complete()

        def connection_lost(self, exc) -> None:
            self._disarm()
            if self._drain_timer is not None:
                self._drain_timer.cancel()
            super().connection_lost(exc)

    return LimitedHttpToolsProtocol
