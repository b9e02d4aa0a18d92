"""A .csv / .tsv file (or any file with --text-column / --label-column): one example per row."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES, TextRequest, from_file, read_text
from cnnapp.errors import CnnappError

SUFFIXES = (".csv", ".tsv", ".tab")


def read_csv(path: Path, request: TextRequest, arg: str) -> tuple[list[str], list[str]]:
    """Columns named by --text-column (default `text`, else `sentence`) and --label-column (`label`)."""
    text = read_text(path, encoding=request.encoding, arg=arg)
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = rows.fieldnames or []
    text_col = request.text_column or next((c for c in ("text", "sentence") if c in header), "text")
    label_col = request.label_column or "label"
    for option, col in (("--text-column", text_col), ("--label-column", label_col)):
        if col not in header:
            raise CnnappError(f"{option}: no column {col!r} in {path} (columns: {', '.join(header)}). "
                              f"Received: {option.lstrip('-').replace('-', '_')}={col}")
    sentences, labels = [], []
    for row in rows:
        if row[text_col] is None or row[label_col] is None:
            continue  # a short (malformed or trailing) row
        sentences.append(row[text_col])
        labels.append(row[label_col].strip())
    return sentences, labels


def _claims(request: TextRequest) -> bool:
    path = request.single_path
    return (path is not None and path.is_file()
            and (path.suffix.lower() in SUFFIXES or bool(request.text_column or request.label_column)))


@TEXT_SOURCES.register("csv", claims=_claims, priority=30)
def load_csv(request: TextRequest) -> RawData:
    """CSV/TSV columns: --text-column (text, else sentence) and --label-column (label)."""
    return from_file(read_csv, request, "CSV/TSV columns")


load_csv.read_file = read_csv
