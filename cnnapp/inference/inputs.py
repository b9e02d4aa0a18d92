"""What `predict` and `inspect` read: image files, folders and globs; sentences from arguments,
a file or standard input. The same readers and errors for both commands.
"""

from __future__ import annotations

import glob
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from cnnapp.errors import CnnappError


def expand_image_paths(items) -> list[Path]:
    """Files as given, folders as their files (recursively, sorted), globs expanded."""
    paths = []
    for item in items:
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            paths.append(Path(item))  # reported as unreadable
        for m in matches:
            p = Path(m)
            paths += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return paths


def read_images(items) -> tuple[list[bytes], list[str], list[dict]]:
    """(encoded images, their paths, error rows for files that cannot be read)."""
    values, labels, errors = [], [], []
    for p in expand_image_paths(items):
        try:
            values.append(p.read_bytes())
            labels.append(str(p))
        except OSError as e:
            errors.append({"input": str(p), "error": f"cannot read file ({e.strerror})"})
    return values, labels, errors


def read_sentence_lines(source: str, *, stdin=None, encoding: str = "utf-8") -> list[str]:
    """Non-blank lines of a file ('-': standard input); invalid text is a one-line error."""
    try:
        raw = (stdin or sys.stdin.buffer).read() if source == "-" else Path(source).read_bytes()
    except OSError as e:
        raise CnnappError(f"--file: cannot read it ({e.strerror}). Received: {source}") from None
    if isinstance(raw, str):
        text = raw
    else:
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as e:
            line = raw[: e.start].count(b"\n") + 1
            raise CnnappError(f"--file: line {line} is not valid {encoding} (byte {raw[e.start]:#04x}). "
                              f"Received: {source}") from None
    return [line.rstrip("\r") for line in io.StringIO(text).read().split("\n") if line.strip()]


def check_sentences(sentences: list[str], *, as_text: bool) -> None:
    """A sentence that names an existing file is almost surely a mistake (`predict text-model a.png`)."""
    if as_text:
        return
    for s in sentences:
        if s and len(s) < 4096 and "\n" not in s and Path(s).is_file():
            raise CnnappError(f"INPUTS: {s!r} is a file, and this is a sentence model; pass its lines with "
                              f"--file {s}, or add --as-text to classify the words themselves. Received: {s}")


@dataclass
class PredictionRows:
    model_dir: Path
    kind: str
    rows: list[dict]

    @property
    def failed(self) -> bool:
        return any("error" in row for row in self.rows)

    def as_json(self) -> dict:
        return {"model": str(self.model_dir), "kind": self.kind, "predictions": self.rows}


def predict_rows(model: str | Path, inputs, *, file: str | None = None, top_k: int = 3, as_text: bool = False,
                 stdin=None) -> PredictionRows:
    """Answer each input from an exported model: `{"input", "top": [{"class", "probability"}]}` rows,
    or `{"input", "error"}` for inputs that cannot be read or decoded (the others are answered)."""
    from cnnapp.inference.predictor import Predictor
    predictor = Predictor(model)
    if predictor.kind == "image":
        if file is not None:
            raise CnnappError(f"--file: is for sentence models; give image files, folders or globs. Received: {file}")
        values, labels, errors = read_images(inputs)
        if not values and not errors:
            raise CnnappError("INPUTS: give image files, folders or globs to predict. Received: nothing")
        predictions = predictor.predict(values, labels) if values else []
    else:
        sentences = list(inputs)
        check_sentences(sentences, as_text=as_text)
        if file is not None:
            sentences += read_sentence_lines(file, stdin=stdin)
        elif not sentences:
            if stdin is None and sys.stdin.isatty():
                raise CnnappError("INPUTS: give sentences as arguments, with --file, or on standard input. "
                                  "Received: nothing")
            sentences = read_sentence_lines("-", stdin=stdin)
        predictions, errors = predictor.predict(sentences, sentences), []
    rows = errors + [
        {"input": p.input, "error": p.error} if p.error else
        {"input": p.input, "top": [{"class": c, "probability": round(s, 6)} for c, s in p.top(top_k)]}
        for p in predictions]
    return PredictionRows(predictor.model_dir, predictor.kind, rows)
