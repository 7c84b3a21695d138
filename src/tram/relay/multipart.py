"""A multipart/form-data upload (audio transcription): its small fields read, and the `model`
field replaced by the engine's served name. The body is held whole (up to
`server.max_upload_bytes`), never parsed into temporary files; parsing it is CPU work on up to
that many bytes, so the endpoint runs it off the event loop.

Each part's Content-Disposition is read as RFC 7578 and the engine's parser read it (its
`name` parameter exactly, quoted or not; a `filename` makes it a file): a field named twice is
refused, so the gateway and the engine can never take different values of `model` (the
gateway read the first, vLLM the last), and a body of more than `MAX_PARTS` parts is refused.
"""

from __future__ import annotations

import re

from tram.errors import InvalidRequest

__all__ = ["MAX_PARTS", "Form", "boundary_of"]

MAX_PARTS = 64  # a file and its fields: a transcription request has a handful
_BOUNDARY = re.compile(r'^[0-9A-Za-z\'()+_,\-./:=? ]{1,70}$')
_PARAM = re.compile(r'\s*([^=\s;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;\s]*)\s*')


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


def _malformed(why: str) -> InvalidRequest:
    return InvalidRequest(f"The multipart body is malformed: {why}.", code="invalid_multipart")


def _disposition(head: bytes) -> tuple[str | None, str | None]:
    """(the part's field name, its file name if it is a file, else None) from its one
    Content-Disposition."""
    lines = [line for line in head.decode("utf-8", "replace").split("\r\n")
             if line.lower().startswith("content-disposition:")]
    if len(lines) != 1:
        raise _malformed("each part needs exactly one Content-Disposition header")
    kind, _, rest = lines[0].split(":", 1)[1].partition(";")
    if kind.strip().lower() != "form-data":
        raise _malformed("a part's Content-Disposition must be form-data")
    params: dict[str, str] = {}
    for piece in rest.split(";") if rest.strip() else ():
        match = _PARAM.fullmatch(piece)
        if match is None:
            raise _malformed(f"cannot read the Content-Disposition parameter {piece.strip()!r}")
        key, value = match.group(1).lower(), match.group(2)
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        if key in params:
            raise _malformed(f"the Content-Disposition parameter {key!r} is given twice")
        params[key] = value
    filename = params.get("filename", params.get("filename*"))
    return params.get("name"), filename


class Form:
    """The parts of a multipart body, in order; `fields` holds the small non-file ones,
    `files` the file parts (a file upload's own: the name it was sent with, its bytes)."""

    def __init__(self, body: bytes, boundary: str) -> None:
        self.boundary = boundary
        self.size = len(body)
        delimiter = b"--" + boundary.encode("latin-1")
        pieces = body.split(delimiter, MAX_PARTS + 2)
        if len(pieces) > MAX_PARTS + 2:
            raise InvalidRequest(f"The multipart body has more than {MAX_PARTS} parts.",
                                 code="invalid_multipart")
        if len(pieces) < 3 or not pieces[-1].startswith(b"--"):
            raise _malformed("it is cut short or has no closing boundary")
        self._parts: list[tuple[bytes, bytes, str | None, bool]] = []
        self.fields: dict[str, str] = {}
        self.files: dict[str, tuple[str, bytes]] = {}  # field → (file name, content)
        self.has_file = False
        seen: set[str] = set()
        for piece in pieces[1:-1]:
            head, sep, content = piece.removeprefix(b"\r\n").partition(b"\r\n\r\n")
            if not sep:
                raise _malformed("a part has no headers")
            content = content.removesuffix(b"\r\n")
            name, filename = _disposition(head)
            is_file = filename is not None
            if name is not None and name in seen:
                raise InvalidRequest(f"The multipart body names the field '{name}' twice.",
                                     param=name, code="duplicate_field")
            if name is not None:
                seen.add(name)
            self._parts.append((head, content, name, is_file))
            if is_file:
                self.has_file = True
                if name is not None:
                    self.files[name] = (filename or "", content)
            elif name is not None and len(content) <= 4096:
                self.fields[name] = content.decode("utf-8", "replace")

    def with_field(self, field: str, value: str) -> bytes:
        """The body again, with `field`'s value replaced."""
        delimiter = b"--" + self.boundary.encode("latin-1")
        out = [b""]
        for head, content, name, is_file in self._parts:
            replaced = name == field and not is_file
            out.append(b"\r\n" + head + b"\r\n\r\n" + (value.encode() if replaced else content)
                       + b"\r\n")
        return delimiter.join(out) + delimiter + b"--\r\n"
