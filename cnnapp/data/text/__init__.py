"""Sentence sources: what the user has -> `RawData` of sentences (1-D object arrays of str).

One file per source in this package, each registered in `TEXT_SOURCES` with the requests it
claims; the first claimant by priority reads (see `cnnapp.data.SourceRegistry`). Adding a source is
one file here plus its test. File sources (`labelled-lines`, `csv`, `jsonl`) also read `--dev` and
`--test` files, each file in its own format.

File encoding is an option everywhere (MR needs latin-1); a decoding error names the file, the
line and the option.
"""

from __future__ import annotations

import dataclasses
import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnnapp.data import RawData, SourceRegistry
from cnnapp.errors import CnnappError

TEXT_SOURCES = SourceRegistry(__name__, "sentence")


@dataclass(frozen=True)
class TextRequest:
    """The data options of train-text, as given."""

    data: tuple[str, ...] = ()
    dataset: str | None = None
    dev: str | None = None
    test: str | None = None
    encoding: str = "utf-8"
    text_column: str | None = None
    label_column: str | None = None
    data_dir: str | None = None

    @property
    def single_path(self) -> Path | None:
        """The one --data path that is not a glob, else None."""
        if len(self.data) == 1 and not glob.has_magic(self.data[0]):
            return Path(self.data[0])
        return None


# ---------------------------------------------------------------------------- reading files

def decode(raw: bytes, *, path: Path, encoding: str, arg: str) -> str:
    """Bytes -> str; a decoding error names the file, the line and the option to use."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise CnnappError(
            f"{arg}: {path} line {line} is not valid {encoding} (byte {raw[e.start]:#04x}); "
            f"pass --encoding latin-1 (or the file's encoding). Received: encoding={encoding}") from None
    except LookupError:
        raise CnnappError(f"--encoding: unknown encoding. Received: encoding={encoding}") from None


def read_text(path: Path, *, encoding: str, arg: str) -> str:
    if not path.is_file():
        raise CnnappError(f"{arg}: no such file. Received: {path}")
    return decode(path.read_bytes(), path=path, encoding=encoding, arg=arg)


def iter_lines(path: Path, *, encoding: str, arg: str):
    """The non-blank lines of a text file, read as a stream (a file of any size is never held whole).

    Split on "\\n" only: str.splitlines() also breaks at U+0085, which is what latin-1 makes of
    cp1252's "..." byte 0x85 (16 of MR's sentences would be cut in two). A decoding error names the
    file, the line and the option.
    """
    if not path.is_file():
        raise CnnappError(f"{arg}: no such file. Received: {path}")
    try:
        if "\n".encode(encoding) != b"\n":   # UTF-16 and such: bytes lines do not split there
            yield from (line.rstrip("\r") for line in read_text(path, encoding=encoding, arg=arg).split("\n")
                        if line.strip())
            return
        with path.open("rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode(encoding).rstrip("\n").rstrip("\r")
                except UnicodeDecodeError as e:
                    raise CnnappError(
                        f"{arg}: {path} line {number} is not valid {encoding} (byte {raw[e.start]:#04x}); "
                        f"pass --encoding latin-1 (or the file's encoding). Received: encoding={encoding}") from None
                if line.strip():
                    yield line
    except LookupError:
        raise CnnappError(f"--encoding: unknown encoding. Received: encoding={encoding}") from None


def read_lines(path: Path, *, encoding: str, arg: str) -> list[str]:
    """Non-blank lines of a text file (see `iter_lines`)."""
    return list(iter_lines(path, encoding=encoding, arg=arg))


def class_order(labels) -> list[str]:
    """Integer labels in numeric order (so `.all` files keep their 0..K-1), others sorted."""
    uniq = sorted(set(labels))
    return sorted(uniq, key=int) if all(u.lstrip("-").isdigit() for u in uniq) else uniq


def as_arrays(sentences, labels, index: dict, arg: str, where) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise CnnappError(f"{arg}: label {unknown[0]!r} does not occur in the training data. Received: {where}")
    return np.asarray(sentences, dtype=object), np.asarray([index[x] for x in labels], dtype=np.int64)


FileReader = Callable[[Path, TextRequest, str], tuple[list, list]]   # (path, request, arg) -> (sentences, labels)


def reader_for(path: Path, request: TextRequest) -> FileReader:
    """The file reader of the source that would read `path` as --data (so --dev and --test may be
    in another format than the training file)."""
    source = TEXT_SOURCES.detect(dataclasses.replace(request, data=(str(path),), dev=None, test=None, dataset=None))
    read = getattr(source.load, "read_file", None)
    if read is None:
        raise CnnappError(f"--dev/--test: a {source.name} source is not a file of labelled sentences. Received: {path}")
    return read


def from_file(read: FileReader, request: TextRequest, source: str) -> RawData:
    """Train from the one --data file, dev/test from --dev/--test (each read in its own format)."""
    path = request.single_path
    sentences, labels = read(path, request, "--data")
    class_names = class_order(labels)
    index = {c: i for i, c in enumerate(class_names)}
    x, y = as_arrays(sentences, labels, index, "--data", path)
    out = RawData(x=x, y=y, class_names=class_names, name=path.name.split(".")[0],
                  description={"source": f"{source} in {path}"}, test_fraction=0.1)
    for arg, p in (("--dev", request.dev), ("--test", request.test)):
        if p is None:
            continue
        if not Path(p).is_file():
            raise CnnappError(f"{arg}: no such file. Received: {p}")
        xs, ys = as_arrays(*reader_for(Path(p), request)(Path(p), request, arg), index, arg, p)
        if arg == "--dev":
            out.x_dev, out.y_dev = xs, ys
            out.description["validation"] = f"the --dev file {p}"
        else:
            out.x_test, out.y_test = xs, ys
            out.description["test"] = f"the --test file {p}"
    return out


def expand_data_files(data) -> list[Path]:
    """--data values with globs expanded (sorted); each must name an existing file."""
    paths = []
    for item in data:
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise CnnappError(f"--data: the pattern matches no file. Received: data={item}")
        paths += [Path(m) for m in matches]
    for p in paths:
        if not p.is_file():
            raise CnnappError(f"--data: no such file. Received: data={p}")
    return paths


def read_text_data(request: TextRequest) -> tuple[RawData, str]:
    """(RawData, source name) for the options."""
    if request.dataset and request.data:
        raise CnnappError(f"--data and --dataset: give one. Received: data={list(request.data)}, "
                          f"dataset={request.dataset}")
    if not request.data and (request.dev or request.test) and not request.dataset:
        raise CnnappError(f"--dev/--test need --data. Received: dev={request.dev}, test={request.test}")
    path = request.single_path
    if path is not None and not path.exists():
        raise CnnappError(f"--data: no such file or folder. Received: data={path}")
    return TEXT_SOURCES.read(request)


def load_text_data(*, data=None, dev: str | None = None, test: str | None = None, encoding: str = "utf-8",
                   seed: int = 1337, **options):
    """(splits, default model name): the convenience form of `read_text_data` + `RawData.to_splits`."""
    if isinstance(data, (str, Path)):
        data = (str(data),)
    request = TextRequest(data=tuple(data or ()), dev=dev, test=test, encoding=encoding, **options)
    text_data, _ = read_text_data(request)
    return text_data.to_splits(seed=seed), text_data.name
