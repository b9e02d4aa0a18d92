"""Protocol buffer text format, as TF Serving's config files use it (--model_config_file,
--batching_parameters_file, --monitoring_config_file), without protobuf's descriptors.

`parse_text_proto(text, arg)` -> a `Message`: a dict {field: [values]} (a repeated or repeated-by-
mistake field keeps every value; a message value is a Message), which also knows the line each
value came from (`msg.line_of(field, i)`), so a loader can say "unknown field 'model_version_polcy'
(line 5)". Strings follow the format's C escapes (`\\n`, `\\'`, `\\351`, `\\xe9`) over UTF-8 bytes,
so `base_path: 'modèles'` and `base_path: 'mod\\303\\250les'` are both `modèles`.
Errors are CnnappError, one line, naming `arg` and the line.
"""

from __future__ import annotations

import re

from cnnapp.errors import CnnappError

_TOKEN = re.compile(r"""\s*(?:#[^\n]*(?:\n|$)\s*)*"""
                    r"""(?:([A-Za-z_][A-Za-z0-9_.]*)|('(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
                    r"|([-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?[fF]?)|([{}:<>\[\],;]))")
_ESCAPE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.))", re.S)
_SIMPLE = {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v", "\\": b"\\",
           "'": b"'", '"': b'"', "?": b"?"}


class Message(dict):
    """{field: [values]} with the line of each value."""

    def __init__(self, line: int = 1):
        super().__init__()
        self.line = line
        self.lines: dict[str, list[int]] = {}

    def add(self, field: str, value, line: int) -> None:
        self.setdefault(field, []).append(value)
        self.lines.setdefault(field, []).append(line)

    def line_of(self, field: str, index: int = -1) -> int:
        return self.lines.get(field, [self.line])[index]


def unescape(body: str, arg: str, line: int) -> str:
    """A quoted string's body (C escapes over UTF-8 bytes) -> str."""
    if "\\" not in body:
        return body
    out, pos = bytearray(), 0
    for m in _ESCAPE.finditer(body):
        out += body[pos:m.start()].encode("utf-8")
        octal, hexa, char = m.groups()
        if octal is not None:
            value = int(octal, 8)
            if value > 255:
                raise CnnappError(f"{arg}: line {line}: octal escape \\{octal} is past \\377. Received: {body[:80]!r}")
            out.append(value)
        elif hexa is not None:
            out.append(int(hexa, 16))
        elif char in _SIMPLE:
            out += _SIMPLE[char]
        else:
            raise CnnappError(f"{arg}: line {line}: unknown escape \\{char}. Received: {body[:80]!r}")
        pos = m.end()
    out += body[pos:].encode("utf-8")
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError:
        raise CnnappError(f"{arg}: line {line}: the string's escapes are not UTF-8. Received: {body[:80]!r}") from None


def _tokens(text: str, arg: str):
    pos, line, end = 0, 1, len(text.rstrip())
    while pos < end:
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            line += text.count("\n", pos, _TOKEN_START.match(text, pos).end())
            raise CnnappError(f"{arg}: line {line}: cannot parse. Received: {text[pos:pos + 40].strip()!r}")
        ident, string, number, punct = m.groups()
        start = m.start(m.lastindex)
        line += text.count("\n", pos, start)
        if ident is not None:
            yield "ident", ident, line
        elif string is not None:
            yield "value", unescape(string[1:-1], arg, line), line
        elif number is not None:
            digits = number.rstrip("fF")
            yield "value", int(digits) if re.fullmatch(r"[-+]?\d+", digits) else float(digits), line
        else:
            yield "punct", punct, line
        line += text.count("\n", start, m.end())
        pos = m.end()


_TOKEN_START = re.compile(r"\s*(?:#[^\n]*(?:\n|$)\s*)*")


def parse_text_proto(text: str, arg: str = "--model_config_file") -> Message:
    """Protobuf text format -> Message (repeated fields are lists; messages are Messages)."""
    tokens = list(_tokens(text, arg))
    pos = 0

    def message(close: str | None, line: int) -> Message:
        nonlocal pos
        out = Message(line)
        while pos < len(tokens):
            kind, tok, at = tokens[pos]
            if kind == "punct" and tok in ("}", ">"):
                if close is None:
                    raise CnnappError(f"{arg}: line {at}: unexpected {tok!r}. Received: {tok!r}")
                if tok != close:
                    raise CnnappError(f"{arg}: line {at}: expected {close!r}. Received: {tok!r}")
                pos += 1
                return out
            if kind == "punct" and tok in (",", ";"):
                pos += 1
                continue
            if kind != "ident":
                raise CnnappError(f"{arg}: line {at}: expected a field name. Received: {tok!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos][:2] == ("punct", ":"):
                pos += 1
            if pos >= len(tokens):
                raise CnnappError(f"{arg}: line {at}: field {tok!r} has no value. Received: end of file")
            vkind, value, vline = tokens[pos]
            if vkind == "punct" and value in ("{", "<"):
                pos += 1
                value = message("}" if value == "{" else ">", vline)
            elif vkind == "ident":          # true / false / an enum name
                value = {"true": True, "false": False, "True": True, "False": False}.get(value, value)
                pos += 1
            elif vkind != "value":
                raise CnnappError(f"{arg}: line {vline}: field {tok!r} has no value. Received: {value!r}")
            else:
                pos += 1
                # adjacent string literals are one string, as in C and protobuf
                while isinstance(value, str) and pos < len(tokens) and tokens[pos][0] == "value" \
                        and isinstance(tokens[pos][1], str):
                    value += tokens[pos][1]
                    pos += 1
            out.add(tok, value, at)
        if close is not None:
            raise CnnappError(f"{arg}: line {line}: a '{{' is never closed. Received: end of file")
        return out

    return message(None, 1)


def one(msg: dict, key: str, default=None):
    """The value of a singular field (the last one given, as protobuf takes it)."""
    return msg.get(key, [default])[-1]
