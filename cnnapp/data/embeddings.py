"""Pretrained word vectors -> the embedding matrix of an adapted vocabulary (Kim's static/non-static).

Formats, detected from the file:
- word2vec binary: a `count dim` header line, then `word<space>` + dim little-endian float32 per word;
- word2vec text: the same header, then `word v1 ... vdim` lines;
- GloVe text: no header, `word v1 ... vdim` lines.
Several files may be given; the first file that has a word wins.

Only the vectors of vocabulary words are kept, so a large file costs one pass and little memory.
Words missing from every file get uniform [-a, a] vectors with a chosen so their variance matches
the pretrained vectors' (a^2 / 3 = var), as Kim (2014) did (his code hard-codes a = 0.25, about the
variance of word2vec). Row 0 (padding) is zeros; row 1 ([UNK]) is initialised like a missing word.

    >>> matrix, coverage = build_embedding_matrix(["", "[UNK]", "the", "film"], ["glove.6B.50d.txt"])
    >>> matrix.shape, coverage["types_found"]
    ((4, 50), 2)
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)
HEADER = re.compile(rb"^\s*(\d+)\s+(\d+)\s*$")
FORMATS = ("word2vec-binary", "word2vec-text", "glove-text")
CHECKED_LINES = 5   # lines of every text file parsed whether their words are wanted or not


def detect_format(path: Path) -> str:
    """One of FORMATS, from the first line and whether the rest is text."""
    with path.open("rb") as f:
        first = f.readline()
        sample = f.read(4096)
    if not HEADER.match(first):
        return "glove-text"
    # A binary body holds raw float32 bytes: NULs or bytes that are not UTF-8 within the first words.
    if b"\0" in sample:
        return "word2vec-binary"
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(sample) - 4:  # not just a character cut at the end of the sample
            return "word2vec-binary"
    return "word2vec-text"


def _read_text_vectors(path: Path, wanted: set[str], *, header: bool, arg: str) -> tuple[dict, int]:
    vectors, dim, checked = {}, None, 0
    with path.open("rb") as f:
        if header:
            dim = int(HEADER.match(f.readline()).group(2))
        for n, raw in enumerate(f, start=2 if header else 1):
            parts = raw.rstrip(b"\r\n").split(b" ")
            if len(parts) < 2:
                continue
            if dim is None:
                dim = len(parts) - 1
            try:
                word = parts[0].decode("utf-8")
            except UnicodeDecodeError:
                word = parts[0].decode("latin-1")  # word2vec files from the web mix encodings
            # Every wanted line, and the first few of any file, must be a word and `dim` numbers: a file
            # that is not vectors at all (random bytes, a text corpus) stops here instead of training.
            if word not in wanted and word.lower() not in wanted and checked >= CHECKED_LINES:
                continue
            checked += 1
            if len(parts) - 1 != dim:
                raise CnnappError(f"{arg}: {path} line {n} has {len(parts) - 1} values, expected {dim}. "
                                  f"Received: embeddings={path}")
            try:
                vector = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise CnnappError(f"{arg}: {path} line {n} is not a word and {dim} numbers: not a word2vec or GloVe "
                                  f"file. Received: embeddings={path}") from None
            if word in wanted or word.lower() in wanted:
                vectors.setdefault(word, vector)
    return vectors, dim or 0


def _read_word2vec_binary(path: Path, wanted: set[str], *, arg: str) -> tuple[dict, int]:
    vectors = {}
    with path.open("rb") as f:
        count, dim = (int(v) for v in HEADER.match(f.readline()).groups())
        nbytes = 4 * dim
        for _ in range(count):
            chars = []
            while True:
                ch = f.read(1)
                if ch in (b" ", b""):
                    break
                if ch != b"\n":  # some writers end each vector with a newline
                    chars.append(ch)
            blob = f.read(nbytes)
            if len(blob) < nbytes:
                raise CnnappError(f"{arg}: {path} ends early (header says {count} words). "
                                  f"Received: embeddings={path}")
            word = b"".join(chars).decode("utf-8", "replace")
            if word in wanted or word.lower() in wanted:
                vectors.setdefault(word, np.frombuffer(blob, dtype="<f4").astype(np.float32))
    return vectors, dim


def load_vectors(path, wanted, *, arg: str = "--embeddings") -> tuple[dict[str, np.ndarray], int, str]:
    """({word: vector} for the wanted words (or their capitalised forms), dim, format) from one file."""
    path = Path(path)
    if not path.is_file():
        raise CnnappError(f"{arg}: no such file. Received: embeddings={path}")
    fmt = detect_format(path)
    wanted = set(wanted)
    if fmt == "word2vec-binary":
        vectors, dim = _read_word2vec_binary(path, wanted, arg=arg)
    else:
        vectors, dim = _read_text_vectors(path, wanted, header=fmt == "word2vec-text", arg=arg)
    if dim == 0:
        raise CnnappError(f"{arg}: no vectors in {path}. Received: embeddings={path}")
    log.info("%s: %s, %d dimensions, %d vocabulary words found", path, fmt, dim, len(vectors))
    return vectors, dim, fmt


def build_embedding_matrix(vocabulary: list[str], paths, *, seed: int = 1337,
                           token_counts: dict[str, int] | None = None) -> tuple[np.ndarray, dict]:
    """(matrix [len(vocabulary), dim] float32, coverage) for a TextVectorization vocabulary.

    `vocabulary[0]` is padding ('') and `vocabulary[1]` the OOV token, as TextVectorization orders
    them. `token_counts` ({word: occurrences in the training text}) adds token coverage.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    words = list(vocabulary[2:])
    found: dict[str, np.ndarray] = {}
    dim, formats = None, []
    for path in paths:
        remaining = set(words) - set(found)
        vectors, file_dim, fmt = load_vectors(path, remaining)
        if dim is not None and file_dim != dim:
            raise CnnappError(f"--embeddings: {path} has {file_dim} dimensions, the first file {dim}. "
                              f"Received: embeddings={[str(p) for p in paths]}")
        dim = file_dim
        formats.append(fmt)
        # An exact match first, then a lower-cased file word (vocabularies are lower-cased).
        lower = {w.lower(): v for w, v in vectors.items()}
        for word in remaining:
            vec = vectors.get(word, lower.get(word))
            if vec is not None:
                found[word] = vec

    rng = np.random.default_rng(seed)
    if found:
        var = float(np.stack(list(found.values())).var())
        scale = float(np.sqrt(3.0 * var))          # U(-a, a) has variance a^2 / 3
    else:
        scale = 0.25                                # Kim's constant when nothing is known
    matrix = rng.uniform(-scale, scale, size=(len(vocabulary), dim)).astype(np.float32)
    matrix[0] = 0.0                                 # padding contributes nothing to a convolution
    for i, word in enumerate(vocabulary[2:], start=2):
        if word in found:
            matrix[i] = found[word]

    coverage = {
        "files": [str(p) for p in paths], "formats": formats, "dim": int(dim),
        "types": len(words), "types_found": len(found),
        "type_coverage": round(len(found) / max(len(words), 1), 4),
        "missing_init": f"uniform(-{scale:.4f}, {scale:.4f}), variance matched to the pretrained vectors",
    }
    if token_counts is not None:
        total = sum(token_counts.values())
        covered = sum(c for w, c in token_counts.items() if w in found)
        coverage.update(tokens=int(total), tokens_found=int(covered),
                        token_coverage=round(covered / max(total, 1), 4))
    log.info("embeddings cover %d of %d vocabulary types (%.1f%%)%s", len(found), len(words),
             100 * coverage["type_coverage"],
             f" and {100 * coverage['token_coverage']:.1f}% of training tokens" if token_counts else "")
    return matrix, coverage
