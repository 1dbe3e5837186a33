"""Streaming ``multipart/form-data``: parts are read one after another straight from the request.

Starlette's ``request.form()`` spools every file part to a temporary file before the handler runs, so a
150 MB upload would be fully received before any check. Here the handler sees each part's headers first
and pulls its bytes chunk by chunk (bounded by the server's receive size), so it can validate the form
fields before the file, and stop a file as soon as it is too large or of the wrong type.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header


class MultipartError(ValueError):
    """The request body is not well-formed multipart/form-data."""


@dataclass
class Part:
    name: str
    filename: str | None
    content_type: str | None


class StreamingMultipart:
    def __init__(self, content_type: str, stream: AsyncIterator[bytes]):
        kind, params = parse_options_header(content_type)
        if kind != b"multipart/form-data":
            raise MultipartError(f"expected multipart/form-data, got {kind.decode('latin-1') or 'no content type'}")
        boundary = params.get(b"boundary")
        if not boundary:
            raise MultipartError("multipart/form-data without a boundary")
        self._events: deque[tuple] = deque()
        self._stream = stream.__aiter__()
        self._finished = False
        self._header_name = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._on_part_begin,
                "on_part_data": self._on_part_data,
                "on_part_end": lambda: self._events.append(("end",)),
                "on_header_field": self._on_header_field,
                "on_header_value": self._on_header_value,
                "on_header_end": self._on_header_end,
                "on_headers_finished": self._on_headers_finished,
            },
        )

    # --- parser callbacks (synchronous; they only queue events) -------------------------------
    def _on_part_begin(self) -> None:
        self._headers = {}

    def _on_part_data(self, data: bytes, start: int, end: int) -> None:
        if end > start:
            self._events.append(("data", bytes(data[start:end])))

    def _on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def _on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _on_header_end(self) -> None:
        self._headers[self._header_name.lower()] = self._header_value
        self._header_name, self._header_value = b"", b""

    def _on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name")
        if name is None:
            raise MultipartError('a part has no Content-Disposition "name"')
        filename = options.get(b"filename")
        ctype = self._headers.get(b"content-type")
        self._events.append(
            (
                "part",
                Part(
                    name=name.decode("utf-8", errors="replace"),
                    filename=filename.decode("utf-8", errors="replace") if filename is not None else None,
                    content_type=ctype.decode("latin-1") if ctype else None,
                ),
            )
        )

    # --- pulling events -----------------------------------------------------------------------
    async def _next_event(self) -> tuple | None:
        while not self._events:
            if self._finished:
                return None
            try:
                chunk = await self._stream.__anext__()
            except StopAsyncIteration:
                self._finished = True
                try:
                    self._parser.finalize()
                except FormParserError as exc:
                    raise MultipartError(f"malformed multipart body: {exc}") from None
                continue
            try:
                self._parser.write(chunk)
            except FormParserError as exc:
                raise MultipartError(f"malformed multipart body: {exc}") from None
        return self._events.popleft()

    async def next_part(self) -> Part | None:
        """The next part's headers (skipping what is left of the current part), or None at the end."""
        while True:
            event = await self._next_event()
            if event is None:
                return None
            if event[0] == "part":
                return event[1]

    async def iter_data(self) -> AsyncIterator[bytes]:
        """The bytes of the current part, chunk by chunk."""
        while True:
            event = await self._next_event()
            if event is None:
                raise MultipartError("the multipart body ended in the middle of a part")
            if event[0] == "data":
                yield event[1]
            elif event[0] == "end":
                return

    async def read(self, limit: int) -> bytes:
        """The whole current part, refusing more than ``limit`` bytes (for small form fields)."""
        buf = bytearray()
        async for chunk in self.iter_data():
            buf += chunk
            if len(buf) > limit:
                raise OverflowError(f"more than {limit} bytes")
        return bytes(buf)
