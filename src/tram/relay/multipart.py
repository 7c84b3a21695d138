"""A multipart/form-data upload (audio transcription): its small fields read, and the `model`
field replaced by the engine's served name. The body is held whole (up to
`server.max_upload_bytes`), never parsed into temporary files."""

from __future__ import annotations

import re

from tram.errors import InvalidRequest

__all__ = ["Form", "boundary_of"]

_BOUNDARY = re.compile(r'^[0-9A-Za-z\'()+_,\-./:=? ]{1,70}$')
_NAME = re.compile(rb'content-disposition:[^\r\n]*?\bname="([^"]*)"', re.IGNORECASE)
_FILENAME = re.compile(rb'content-disposition:[^\r\n]*?\bfilename=', re.IGNORECASE)


def boundary_of(content_type: str | None) -> str:
    """The boundary parameter of a multipart/form-data content type (RFC 2046's characters)."""
    kind, *params = (content_type or "").split(";")
    if kind.strip().lower() == "multipart/form-data":
        for param in params:
            name, _, value = param.strip().partition("=")
            value = value.strip().strip('"')
            if name.lower() == "boundary" and _BOUNDARY.match(value):
                return value
    raise InvalidRequest("This route takes a multipart/form-data body (a file and its fields).",
                         code="invalid_content_type")


class Form:
    """The parts of a multipart body, in order; `fields` holds the small non-file ones."""

    def __init__(self, body: bytes, boundary: str) -> None:
        self.boundary = boundary
        delimiter = b"--" + boundary.encode("latin-1")
        pieces = body.split(delimiter)
        if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
            raise InvalidRequest("The multipart body is malformed or cut short.",
                                 code="invalid_multipart")
        self._parts: list[tuple[bytes, bytes]] = []  # (headers, content)
        self.fields: dict[str, str] = {}
        self.has_file = False
        for piece in pieces[1:-1]:
            head, sep, content = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            if not sep:
                raise InvalidRequest("A part of the multipart body has no headers.",
                                     code="invalid_multipart")
            content = content.removesuffix(b"\r\n")
            self._parts.append((head, content))
            name = _NAME.search(head)
            if _FILENAME.search(head):
                self.has_file = True
            elif name is not None and len(content) <= 4096:
                self.fields[name.group(1).decode("utf-8", "replace")] = \
                    content.decode("utf-8", "replace")

    def with_field(self, field: str, value: str) -> bytes:
        """The body again, with `field`'s value replaced."""
        delimiter = b"--" + self.boundary.encode("latin-1")
        out = [b""]
        for head, content in self._parts:
            name = _NAME.search(head)
            replaced = name is not None and not _FILENAME.search(head) \
                and name.group(1).decode("utf-8", "replace") == field
            out.append(b"\r\n" + head + b"\r\n\r\n" + (value.encode() if replaced else content)
                       + b"\r\n")
        return delimiter.join(out) + delimiter + b"--\r\n"
