"""JSON parsing that lets other threads run: for large request bodies, parsed in a worker thread.

`json.loads` runs its C scanner over the whole document holding the GIL: a 58 MB body of 4.4M keys
stalls every other thread (the event loop answering status GETs) for seconds, wherever it is parsed.
`loads` here walks containers in Python, so the interpreter can switch threads between any two
elements, and hands the C scanner only pieces whose size is bounded:
- a container that closes within `WINDOW` characters (`[r, g, b]`, a row of pixels, an instance
  object, a small image): in one C call, at C speed;
- in a list, the whole elements within `WINDOW` characters; in an object, a run of
  `"key": <plain string or number>` pairs: in one C call;
- any other scalar: one at a time.
The result is what `json.loads` gives (same numbers, last duplicate key wins, NaN/Infinity); errors
are `json.JSONDecodeError`s, and nesting deeper than `MAX_DEPTH` is refused without recursion.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring

WINDOW = 16 * 1024          # what one C call may parse (about a millisecond)
MAX_DEPTH = 512             # tensors have a rank of a few; this is far past any request

_WS = re.compile(r"[ \t\n\r]*")
# In an object: `"key": <plain string or number>,` pairs.
_PAIRS = re.compile(r'(?:"[^"\\]*"[ \t\n\r]*:[ \t\n\r]*(?:"[^"\\]*"|-?[0-9][0-9.eE+\-]*)[ \t\n\r]*,[ \t\n\r]*)+')
_scan = json.JSONDecoder().scan_once


class NestingTooDeep(ValueError):
    pass


def loads(text: str | bytes):
    """`json.loads(text)`, yielding the GIL between elements."""
    if isinstance(text, (bytes, bytearray)):
        text = text.decode(json.detect_encoding(text), "surrogatepass")
    if text.startswith("\ufeff"):
        raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", text, 0)
    s, n = text, len(text)
    ws = _WS.match
    stack: list[list] = []          # [container, key (objects), is_list]
    window = [WINDOW]               # _run's current window
    idx = ws(s, 0).end()
    while True:
        # ---- one value at idx
        c = s[idx:idx + 1]
        if stack and stack[-1][2] and c != "]":
            idx = _run(s, idx, stack[-1][0], window)
            c = s[idx:idx + 1]
        if c == "[" or c == "{":
            value, idx = _small_container(s, idx)
            if value is None:
                if len(stack) >= MAX_DEPTH:
                    raise NestingTooDeep(f"nesting deeper than {MAX_DEPTH}")
                idx = ws(s, idx + 1).end()
                close = "]" if c == "[" else "}"
                if s[idx:idx + 1] == close:
                    value, idx = ([] if c == "[" else {}), idx + 1
                else:
                    entry = [[] if c == "[" else {}, None, c == "["]
                    stack.append(entry)
                    if c == "{":
                        idx = _key(s, idx, entry)
                    continue
        else:
            try:
                value, idx = _scan(s, idx)
            except StopIteration as e:
                raise json.JSONDecodeError("Expecting value", s, e.value) from None
        # ---- put it in its container; close the containers that end here
        while True:
            if not stack:
                end = ws(s, idx).end()
                if end != n:
                    raise json.JSONDecodeError("Extra data", s, end)
                return value
            entry = stack[-1]
            container, key, is_list = entry
            if is_list:
                container.append(value)
            else:
                container[key] = value
            idx = ws(s, idx).end()
            c = s[idx:idx + 1]
            if c == ",":
                idx = ws(s, idx + 1).end()
                if not is_list:
                    idx = _key(s, idx, entry)
                break
            if c == ("]" if is_list else "}"):
                idx += 1
                value = container
                stack.pop()
                continue
            raise json.JSONDecodeError("Expecting ',' delimiter", s, idx)


def _key(s: str, idx: int, entry: list) -> int:
    """Read `"key" :` at idx into entry[1]; the index of the value after it (runs of plain
    `"key": value,` pairs before it go into the object in one C call)."""
    m = _PAIRS.match(s, idx, min(len(s), idx + WINDOW))
    if m is not None:
        piece = s[idx:m.end()].rstrip(" \t\n\r")
        wrapped = "{" + piece[:-1] + "}"
        try:
            pairs, end = _scan(wrapped, 0)
        except (StopIteration, ValueError):
            end = -1
        if end == len(wrapped):
            entry[0].update(pairs)
            idx = _WS.match(s, m.end()).end()
    if s[idx:idx + 1] != '"':
        raise json.JSONDecodeError("Expecting property name enclosed in double quotes", s, idx)
    entry[1], idx = scanstring(s, idx + 1)
    idx = _WS.match(s, idx).end()
    if s[idx:idx + 1] != ":":
        raise json.JSONDecodeError("Expecting ':' delimiter", s, idx)
    return _WS.match(s, idx + 1).end()


def _small_container(s: str, idx: int):
    """(value, end) of the list or object at idx when it closes within WINDOW characters; else
    (None, idx). Tried on a window that doubles from 4 KB, so a small container costs a small copy."""
    size = 4096
    while True:
        try:
            value, end = _scan(s[idx:idx + size], 0)
            return value, idx + end
        except (StopIteration, ValueError, RecursionError):
            if size >= WINDOW or idx + size >= len(s):
                return None, idx
            size *= 2


def _run(s: str, idx: int, into: list, window: list) -> int:
    """Append the whole elements at idx, up to the last separator within `window[0]` characters,
    to `into` in one C call; the index after them (idx when that did not parse). A cut that is not
    between two elements (a comma in a string or in a nested list) never parses: the brackets or
    quotes are then unbalanced. The window halves on a failure (down to 256) and doubles on a
    success (up to WINDOW), so a list whose elements defeat the cut costs little extra."""
    size = window[0]
    piece = s[idx:idx + size]
    sep = {"{": "},", "[": "],"}.get(piece[:1], ",")
    cut = piece.rfind(sep)
    if cut > 0:
        cut += len(sep) - 1                 # the comma
        wrapped = "[" + piece[:cut] + "]"
        try:
            values, end = _scan(wrapped, 0)
        except (StopIteration, ValueError, RecursionError):
            end = -1
        if end == len(wrapped):         # the whole piece, not a list that closed inside it
            into.extend(values)
            window[0] = min(WINDOW, size * 2)
            return _WS.match(s, idx + cut + 1).end()
    window[0] = max(256, size // 2)
    return idx
