"""What `predict` and `inspect` read: image files, folders and globs; sentences from arguments,
a file or standard input. The same readers and errors for both commands.

`predict` reads at most what the model can use of each input: an image file or a sentence line over
a size limit (`max_input_bytes`; 64 MiB a file, 1 MiB a line by default) is refused in one line that
names it, without reading the rest of it; a sentence far past the model's sequence length is cut after
the words that fill it, with a note; errors and notes echo at most a short prefix of an input.
"""

from __future__ import annotations

import glob
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cnnapp import layout
from cnnapp.errors import CnnappError

MAX_IMAGE_BYTES = 64 << 20       # an image file predict reads (a 12-megapixel JPEG is ~5 MB)
MAX_SENTENCE_BYTES = 1 << 20     # a sentence line (the longest model reads 400 tokens)
ECHO_CHARS = 60                  # of an input, in an error or a note
ROW_ECHO_CHARS = 1000            # of a sentence, as the `input` of its row
RUNTIMES = ("litert", "savedmodel")


def echo(text: str, limit: int = ECHO_CHARS) -> str:
    """`text` for a message: itself when short, else a quoted prefix and its length."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text):,} characters)"


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


def read_images(items, *, max_bytes: int | None = None) -> tuple[list[bytes], list[str], list[dict]]:
    """(encoded images, their paths, error rows for files that cannot be read or are over `max_bytes`;
    of a file, at most `max_bytes` + 1 bytes are read)."""
    values, labels, errors = [], [], []
    for p in expand_image_paths(items):
        try:
            with open(p, "rb") as f:
                data = f.read() if max_bytes is None else f.read(max_bytes + 1)
        except OSError as e:
            errors.append({"input": str(p), "error": f"cannot read file ({e.strerror})"})
            continue
        if max_bytes is not None and len(data) > max_bytes:
            errors.append({"input": str(p), "error": f"file over the {max_bytes:,}-byte limit (--max-input-bytes); "
                                                     f"not read"})
            continue
        values.append(data)
        labels.append(str(p))
    return values, labels, errors


def _decode_line(raw: bytes, *, number: int, encoding: str, source: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        raise CnnappError(f"--file: line {number} is not valid {encoding} (byte {raw[e.start]:#04x}). "
                          f"Received: {source}") from None


def _bounded_lines(stream, *, max_line_bytes: int, encoding: str, source: str) -> list[str]:
    """The lines of a stream, read one at a time: a line longer than `max_line_bytes` (its line break
    aside) is refused as soon as that many bytes of it were read."""
    lines, number = [], 0
    while True:
        raw = stream.readline(max_line_bytes + 1)
        if not raw:
            return lines
        number += 1
        if len(raw) > max_line_bytes and raw[-1:] not in ("\n", b"\n"):
            where = "standard input" if source == "-" else source
            raise CnnappError(f"--file: line {number} of {where} is longer than {max_line_bytes:,} bytes "
                              f"(--max-input-bytes); no sentence is that long. Received: {source}")
        text = raw if isinstance(raw, str) else _decode_line(raw, number=number, encoding=encoding, source=source)
        lines.append(text[:-1] if text.endswith("\n") else text)


def read_sentence_lines(source: str, *, stdin=None, encoding: str = "utf-8",
                        max_line_bytes: int | None = None) -> list[str]:
    """Non-blank lines of a file ('-': standard input); invalid text is a one-line error. With
    `max_line_bytes`, lines are read one at a time and a longer one is a one-line error naming it."""
    try:
        if max_line_bytes is not None:
            if source == "-":
                lines = _bounded_lines(stdin or sys.stdin.buffer, max_line_bytes=max_line_bytes, encoding=encoding,
                                       source=source)
            else:
                with open(source, "rb") as f:
                    lines = _bounded_lines(f, max_line_bytes=max_line_bytes, encoding=encoding, source=source)
        else:
            raw = (stdin or sys.stdin.buffer).read() if source == "-" else Path(source).read_bytes()
            if isinstance(raw, str):
                text = raw
            else:
                try:
                    text = raw.decode(encoding)
                except UnicodeDecodeError as e:
                    line = raw[: e.start].count(b"\n") + 1
                    raise CnnappError(f"--file: line {line} is not valid {encoding} (byte {raw[e.start]:#04x}). "
                                      f"Received: {source}") from None
            lines = text.split("\n")
    except OSError as e:
        raise CnnappError(f"--file: cannot read it ({e.strerror}). Received: {source}") from None
    return [line.rstrip("\r") for line in lines if line.strip()]


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
    runtime: str = "savedmodel"
    notes: list[str] = field(default_factory=list)    # one line each, for standard error (not in the JSON)

    @property
    def failed(self) -> bool:
        return any("error" in row for row in self.rows)

    def as_json(self) -> dict:
        return {"model": str(self.model_dir), "kind": self.kind, "predictions": self.rows}


def open_predictor(model: str | Path, *, runtime: str | None = None):
    """The predictor of an export: its LiteRT model (no TensorFlow) when it has one and `runtime` is not
    'savedmodel', else the SavedModel; `runtime='litert'` on an export without one is a one-line error."""
    from cnnapp.inference.litert import LiteRTPredictor, has_litert
    if runtime not in (None, *RUNTIMES):
        raise CnnappError(f"--runtime: choose from {', '.join(RUNTIMES)}. Received: {runtime}")
    version_dir = layout.resolve_version_dir(model)
    if runtime == "litert" and not has_litert(version_dir):
        raise CnnappError(f"--runtime: this export has no LiteRT model ({layout.LITERT_DIR}/ is missing; exports "
                          f"before cnnapp wrote one, or --litert none); use --runtime savedmodel. "
                          f"Received: litert for {version_dir}")
    if runtime != "savedmodel" and has_litert(version_dir):
        return LiteRTPredictor(version_dir)
    from cnnapp.inference.predictor import Predictor
    return Predictor(version_dir)


def text_facts(predictor) -> tuple[int | None, str | None]:
    """(sequence length, standardization) of a sentence model: the LiteRT metadata or cnnapp.json."""
    meta = getattr(predictor, "meta", None) or layout.read_metadata(predictor.model_dir)
    length, standardize = meta.get("sequence_length"), meta.get("standardize")
    return (int(length), str(standardize)) if length and standardize else (None, None)


def clip_sentences(sentences: list[str], predictor) -> tuple[list[str], list[str]]:
    """(the sentences cut after the words that fill the model's sequence, one note for each cut)."""
    length, standardize = text_facts(predictor)
    if length is None:
        return sentences, []
    from cnnapp.inference.tokens import clip_sentence
    clipped, notes = [], []
    for number, sentence in enumerate(sentences, 1):
        cut, words = clip_sentence(sentence, sequence_length=length, standardize=standardize)
        if words is not None:
            notes.append(f"note: sentence {number} ({echo(sentence)}) has {words:,} words; the model reads "
                         f"{length} tokens, so it was cut after {len(cut):,} characters")
        clipped.append(cut)
    return clipped, notes


def _row_input(sentence: str) -> str:
    return sentence if len(sentence) <= ROW_ECHO_CHARS else sentence[:ROW_ECHO_CHARS] + "..."


def predict_rows(model: str | Path, inputs, *, file: str | None = None, top_k: int = 3, as_text: bool = False,
                 stdin=None, runtime: str | None = None, max_input_bytes: int | None = None) -> PredictionRows:
    """Answer each input from an exported model: `{"input", "top": [{"class", "probability"}]}` rows,
    or `{"input", "error"}` for inputs that cannot be read or decoded (the others are answered).
    `runtime`: 'litert', 'savedmodel' or None (LiteRT when the export has it). `max_input_bytes`: the
    limit of an image file or a sentence (None: MAX_IMAGE_BYTES, MAX_SENTENCE_BYTES)."""
    predictor = open_predictor(model, runtime=runtime)
    notes = []
    if predictor.kind == "image":
        if file is not None:
            raise CnnappError(f"--file: is for sentence models; give image files, folders or globs. Received: {file}")
        values, labels, errors = read_images(inputs, max_bytes=max_input_bytes or MAX_IMAGE_BYTES)
        if not values and not errors:
            raise CnnappError("INPUTS: give image files, folders or globs to predict. Received: nothing")
        predictions = predictor.predict(values, labels) if values else []
    else:
        limit = max_input_bytes or MAX_SENTENCE_BYTES
        sentences = list(inputs)
        for number, sentence in enumerate(sentences, 1):
            if len(sentence) > limit or len(sentence.encode("utf-8", "surrogatepass")) > limit:
                raise CnnappError(f"INPUTS: sentence {number} is longer than {limit:,} bytes (--max-input-bytes); "
                                  f"no sentence is that long. Received: {echo(sentence)}")
        check_sentences(sentences, as_text=as_text)
        if file is not None:
            sentences += read_sentence_lines(file, stdin=stdin, max_line_bytes=limit)
        elif not sentences:
            if stdin is None and sys.stdin.isatty():
                raise CnnappError("INPUTS: give sentences as arguments, with --file, or on standard input. "
                                  "Received: nothing")
            sentences = read_sentence_lines("-", stdin=stdin, max_line_bytes=limit)
        sentences, notes = clip_sentences(sentences, predictor)
        predictions, errors = predictor.predict(sentences, [_row_input(s) for s in sentences]), []
    rows = errors + [
        {"input": p.input, "error": p.error} if p.error else
        {"input": p.input, "top": [{"class": c, "probability": round(s, 6)} for c, s in p.top(top_k)]}
        for p in predictions]
    return PredictionRows(predictor.model_dir, predictor.kind, rows,
                          "litert" if hasattr(predictor, "meta") else "savedmodel", notes)
