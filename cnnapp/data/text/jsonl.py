"""JSON Lines: one `{"text": ..., "label": ...}` object per line (.jsonl / .ndjson).

The keys follow --text-column / --label-column when given. A line that is not such an object is a
one-line error naming the file and the line; blank lines are skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES, TextRequest, from_file, read_text
from cnnapp.errors import CnnappError

SUFFIXES = (".jsonl", ".ndjson")


def read_jsonl(path: Path, request: TextRequest, arg: str) -> tuple[list[str], list[str]]:
    text_key, label_key = request.text_column or "text", request.label_column or "label"
    sentences, labels = [], []
    for number, line in enumerate(read_text(path, encoding=request.encoding, arg=arg).split("\n"), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise CnnappError(f"{arg}: {path} line {number} is not JSON ({e.msg}). Received: {line[:80]!r}") from None
        if not isinstance(row, dict) or not isinstance(row.get(text_key), str) or row.get(label_key) is None:
            raise CnnappError(f"{arg}: {path} line {number} is not an object with a string {text_key!r} and a "
                              f"{label_key!r}. Received: {line[:80]!r}")
        sentences.append(row[text_key])
        labels.append(str(row[label_key]).strip())
    return sentences, labels


def _claims(request: TextRequest) -> bool:
    path = request.single_path
    return path is not None and path.is_file() and path.suffix.lower() in SUFFIXES


@TEXT_SOURCES.register("jsonl", claims=_claims, priority=20)
def load_jsonl(request: TextRequest) -> RawData:
    """JSON Lines of {"text": ..., "label": ...} (.jsonl / .ndjson)."""
    return from_file(read_jsonl, request, "JSON Lines")


load_jsonl.read_file = read_jsonl
