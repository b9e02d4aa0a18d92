"""`LABEL sentence` lines (the `.all` / `stsa.*` layout), with optional --dev / --test files."""

from __future__ import annotations

from pathlib import Path

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES, TextRequest, from_file, iter_lines


def read_labelled_lines(path: Path, request: TextRequest, arg: str) -> tuple[list[str], list[str]]:
    """(sentences, label strings) from `LABEL sentence` lines."""
    sentences, labels = [], []
    for line in iter_lines(path, encoding=request.encoding, arg=arg):
        label, _, sentence = line.strip().partition(" ")
        labels.append(label)
        sentences.append(sentence)
    return sentences, labels


@TEXT_SOURCES.register("labelled-lines", claims=lambda r: r.single_path is not None and r.single_path.is_file(),
                       priority=90)
def load_labelled_lines(request: TextRequest) -> RawData:
    """One --data file of `LABEL sentence` lines (any file no other source claims)."""
    return from_file(read_labelled_lines, request, "labelled lines")


load_labelled_lines.read_file = read_labelled_lines
