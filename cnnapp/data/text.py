"""Resolve text data options to in-memory `Splits` of sentences.

Sources:
- the embedded demo corpus (no --data): `cnnapp.data.demo_sentences`;
- labelled lines, `LABEL sentence` (the `.all` / `stsa.*` layout), with optional --dev / --test files.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnnapp.data import Splits, make_splits
from cnnapp.data.demo_sentences import load_demo_splits
from cnnapp.errors import CnnappError


def read_lines(path: Path, *, encoding: str, arg: str) -> list[str]:
    """Lines of a text file; a decoding error names the file, the line and the option to use."""
    if not path.is_file():
        raise CnnappError(f"{arg}: no such file. Received: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CnnappError(
            f"{arg}: {path} line {line} is not valid {encoding} (byte {raw[e.start]:#04x}); "
            f"pass --encoding latin-1 (or the file's encoding). Received: encoding={encoding}") from None
    except LookupError:
        raise CnnappError(f"--encoding: unknown encoding. Received: encoding={encoding}") from None
    return [line for line in text.splitlines() if line.strip()]


def read_labelled_lines(path: Path, *, encoding: str, arg: str) -> tuple[list[str], list[str]]:
    """(sentences, label strings) from `LABEL sentence` lines."""
    sentences, labels = [], []
    for n, line in enumerate(read_lines(path, encoding=encoding, arg=arg), start=1):
        label, _, sentence = line.strip().partition(" ")
        labels.append(label)
        sentences.append(sentence)
    return sentences, labels


def _class_order(labels) -> list[str]:
    uniq = sorted(set(labels))
    return sorted(uniq, key=int) if all(u.lstrip("-").isdigit() for u in uniq) else uniq


def load_text_data(*, data: str | None, dev: str | None = None, test: str | None = None,
                   encoding: str = "utf-8", seed: int = 1337) -> tuple[Splits, str]:
    """Return (splits, source_name)."""
    if data is None:
        if dev or test:
            raise CnnappError(f"--dev/--test need --data. Received: dev={dev}, test={test}")
        return load_demo_splits(seed=seed), "demo-sentences"
    path = Path(data)
    sentences, labels = read_labelled_lines(path, encoding=encoding, arg="--data")
    class_names = _class_order(labels)
    index = {c: i for i, c in enumerate(class_names)}

    def encode(p: str | None, arg: str):
        if p is None:
            return None, None
        s, l = read_labelled_lines(Path(p), encoding=encoding, arg=arg)
        unknown = sorted(set(l) - set(index))
        if unknown:
            raise CnnappError(f"{arg}: label {unknown[0]!r} does not occur in --data. Received: {p}")
        return np.asarray(s, dtype=object), np.asarray([index[x] for x in l], dtype=np.int64)

    x_val, y_val = encode(dev, "--dev")
    x_test, y_test = encode(test, "--test")
    splits = make_splits(np.asarray(sentences, dtype=object), np.asarray([index[x] for x in labels]),
                         class_names, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test, seed=seed,
                         description={"source": f"labelled lines in {path}",
                                      "validation": f"the --dev file {dev}" if dev else None,
                                      "test": f"the --test file {test}" if test else None})
    return splits, path.name.split(".")[0]
