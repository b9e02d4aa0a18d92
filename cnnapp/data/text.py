"""Text data sources: what the user has -> sentences, integer labels and class names.

Every source returns a `TextData` (a train part and, when the source has them, dev and test
parts); `load_text_data` completes the missing splits with `make_splits` (dev = 10% of train,
as Kim did), and `--cv` folds the train part instead (`cnnapp.pipelines.text`).

Sources, registered by name in `SOURCES` and chosen by `detect_source` from the options:

- ``demo``: no --data: the embedded, templated demo corpus (`cnnapp.data.demo_sentences`);
- ``class-files``: several --data files (or a glob), one per class, one sentence per line
  (the rt-polarity layout). The class is the file's last suffix when all files share a stem
  (`rt-polarity.pos`, `rt-polarity.neg` -> pos, neg), else the stem (`good.txt` -> good);
- ``labelled-lines``: one --data file of `LABEL sentence` lines (the `.all` / `stsa.*` layout),
  with optional --dev / --test files of the same layout;
- ``csv``: a .csv / .tsv file (or any file with --text-column), columns named by --text-column
  (default `text`, else `sentence`) and --label-column (default `label`); --dev / --test too;
- ``folder``: a folder of class subfolders of .txt files, one example per file (the aclImdb
  layout); with train/ and test/ subfolders when present (aclImdb's `unsup` is skipped);
- ``tfds``: --dataset NAME, a TensorFlow Datasets name (`imdb_reviews`, `glue/sst2`).

File encoding is an option everywhere (MR needs latin-1); a decoding error names the file, the
line and the option.
"""

from __future__ import annotations

import csv
import glob
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cnnapp.data import Splits, make_splits
from cnnapp.data.demo_sentences import demo_corpus
from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


@dataclass
class TextData:
    """Sentences (1-D object arrays of str) with int64 labels indexing `class_names`."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    name: str                                   # default model name: runs/<name>/
    x_dev: np.ndarray | None = None
    y_dev: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    description: dict = field(default_factory=dict)
    test_fraction: float = 0.0                  # held out of `x` when there is no test part


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


def read_lines(path: Path, *, encoding: str, arg: str) -> list[str]:
    """Non-blank lines of a text file.

    Split on "\n" only: str.splitlines() also breaks at U+0085, which is what latin-1 makes of
    cp1252's "..." byte 0x85 (16 of MR's sentences would be cut in two).
    """
    text = read_text(path, encoding=encoding, arg=arg)
    return [line.rstrip("\r") for line in text.split("\n") if line.strip()]


def read_labelled_lines(path: Path, *, encoding: str, arg: str) -> tuple[list[str], list[str]]:
    """(sentences, label strings) from `LABEL sentence` lines."""
    sentences, labels = [], []
    for line in read_lines(path, encoding=encoding, arg=arg):
        label, _, sentence = line.strip().partition(" ")
        labels.append(label)
        sentences.append(sentence)
    return sentences, labels


def class_order(labels) -> list[str]:
    """Integer labels in numeric order (so `.all` files keep their 0..K-1), others sorted."""
    uniq = sorted(set(labels))
    return sorted(uniq, key=int) if all(u.lstrip("-").isdigit() for u in uniq) else uniq


def _arrays(sentences, labels, index: dict, arg: str, where) -> tuple[np.ndarray, np.ndarray]:
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise CnnappError(f"{arg}: label {unknown[0]!r} does not occur in the training data. Received: {where}")
    return np.asarray(sentences, dtype=object), np.asarray([index[x] for x in labels], dtype=np.int64)


def _with_dev_test(read: Callable[[Path, str], tuple[list, list]], request: TextRequest, path: Path,
                   source: str) -> TextData:
    """Train from --data, dev/test from --dev/--test, all read by `read(path, arg)`."""
    sentences, labels = read(path, "--data")
    class_names = class_order(labels)
    index = {c: i for i, c in enumerate(class_names)}
    x, y = _arrays(sentences, labels, index, "--data", path)
    out = TextData(x=x, y=y, class_names=class_names, name=path.name.split(".")[0],
                   description={"source": f"{source} in {path}"}, test_fraction=0.1)
    for arg, p in (("--dev", request.dev), ("--test", request.test)):
        if p is None:
            continue
        xs, ys = _arrays(*read(Path(p), arg), index, arg, p)
        if arg == "--dev":
            out.x_dev, out.y_dev = xs, ys
            out.description["validation"] = f"the --dev file {p}"
        else:
            out.x_test, out.y_test = xs, ys
            out.description["test"] = f"the --test file {p}"
    return out


# ---------------------------------------------------------------------------- the sources

def load_demo(request: TextRequest) -> TextData:
    sentences, labels = demo_corpus()
    return TextData(x=np.asarray(sentences, dtype=object), y=labels, class_names=["negative", "positive"],
                    name="demo-sentences", test_fraction=0.2,
                    description={"source": "embedded demo sentences (templated, not real reviews)"})


def load_labelled_lines(request: TextRequest) -> TextData:
    return _with_dev_test(lambda p, arg: read_labelled_lines(p, encoding=request.encoding, arg=arg),
                          request, Path(request.data[0]), "labelled lines")


def _class_of(paths: list[Path]) -> list[str]:
    stems = {p.name.rsplit(".", 1)[0] for p in paths}
    if len(stems) == 1 and all("." in p.name for p in paths):
        return [p.name.rsplit(".", 1)[1] for p in paths]        # rt-polarity.pos -> pos
    return [p.name.split(".")[0] for p in paths]                # positive.txt -> positive


def load_class_files(request: TextRequest) -> TextData:
    paths = expand_data_files(request.data)
    names = _class_of(paths)
    if len(set(names)) != len(names):
        raise CnnappError(f"--data: two files give the same class name {names}. "
                          f"Received: data={[str(p) for p in paths]}")
    class_names = sorted(names)
    sentences, labels = [], []
    for path, name in zip(paths, names):
        lines = read_lines(path, encoding=request.encoding, arg="--data")
        sentences += [line.strip() for line in lines]
        labels += [class_names.index(name)] * len(lines)
    stem = paths[0].name.split(".")[0]
    return TextData(x=np.asarray(sentences, dtype=object), y=np.asarray(labels, dtype=np.int64),
                    class_names=class_names, name=stem, test_fraction=0.1,
                    description={"source": "one file per class: " + ", ".join(
                        f"{n}={p}" for p, n in sorted(zip(paths, names), key=lambda t: t[1]))})


def _csv_reader(request: TextRequest) -> Callable[[Path, str], tuple[list, list]]:
    def read(path: Path, arg: str):
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
    return read


def load_csv(request: TextRequest) -> TextData:
    return _with_dev_test(_csv_reader(request), request, Path(request.data[0]), "CSV/TSV columns")


# aclImdb's train/unsup holds 50,000 unlabelled reviews: not a class.
UNLABELLED_FOLDERS = {"unsup"}


def _read_class_folders(root: Path, encoding: str) -> tuple[list[str], list[str]]:
    sentences, labels = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in UNLABELLED_FOLDERS):
        for f in sorted(sub.glob("*.txt")):
            text = read_text(f, encoding=encoding, arg="--data")
            sentences.append(" ".join(text.split()))  # one example per file; newlines are not breaks
            labels.append(sub.name)
    return sentences, labels


def load_folder(request: TextRequest) -> TextData:
    root = Path(request.data[0])
    train_root = root / "train" if (root / "train").is_dir() else root
    sentences, labels = _read_class_folders(train_root, request.encoding)
    if not sentences:
        raise CnnappError(f"--data: no class subfolders with .txt files in {train_root}. Received: data={root}")
    class_names = sorted(set(labels))
    index = {c: i for i, c in enumerate(class_names)}
    x, y = _arrays(sentences, labels, index, "--data", root)
    out = TextData(x=x, y=y, class_names=class_names, name=root.name, test_fraction=0.1,
                   description={"source": f"class subfolders of .txt files in {train_root}"})
    if train_root != root and (root / "test").is_dir():
        out.x_test, out.y_test = _arrays(*_read_class_folders(root / "test", request.encoding), index,
                                         "--data", root / "test")
        out.description["test"] = f"the test/ subfolder of {root}"
    return out


# The text feature of the TFDS datasets people ask for; GLUE single-sentence tasks use "sentence".
TFDS_TEXT_FEATURE = {"imdb_reviews": "text", "glue": "sentence", "yelp_polarity_reviews": "text",
                     "ag_news_subset": "description"}


def load_tfds(request: TextRequest) -> TextData:
    from cnnapp.data.tfds_source import load_tfds_arrays
    name = request.dataset
    feature = request.text_column or TFDS_TEXT_FEATURE.get(name.split("/")[0].split(":")[0], "text")
    arrays, class_names = load_tfds_arrays(name, data_dir=request.data_dir, feature=feature)
    if "train" not in arrays:
        raise CnnappError(f"--dataset: no labelled train split in {name} (splits: {sorted(arrays)}). "
                          f"Received: {name}")
    x, y = arrays["train"]
    # GLUE's test labels are hidden (the loader drops them), so its validation split is the test set.
    test_split = "test" if "test" in arrays else ("validation" if "validation" in arrays else None)
    out = TextData(x=x, y=y, class_names=class_names, name=name.replace("/", "_").split(":")[0],
                   test_fraction=0.1, description={"source": f"TFDS {name}, feature {feature!r}"})
    if test_split:
        out.x_test, out.y_test = arrays[test_split]
        out.description["test"] = f"TFDS {name} split {test_split!r}"
    if test_split == "test" and "validation" in arrays:
        out.x_dev, out.y_dev = arrays["validation"]
        out.description["validation"] = f"TFDS {name} split 'validation'"
    return out


SOURCES: dict[str, Callable[[TextRequest], TextData]] = {
    "demo": load_demo,
    "class-files": load_class_files,
    "labelled-lines": load_labelled_lines,
    "csv": load_csv,
    "folder": load_folder,
    "tfds": load_tfds,
}


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


def detect_source(request: TextRequest) -> str:
    """The name in `SOURCES` that reads what the options point at."""
    if request.dataset and request.data:
        raise CnnappError(f"--data and --dataset: give one. Received: data={list(request.data)}, "
                          f"dataset={request.dataset}")
    if request.dataset:
        return "tfds"
    if not request.data:
        if request.dev or request.test:
            raise CnnappError(f"--dev/--test need --data. Received: dev={request.dev}, test={request.test}")
        return "demo"
    if len(request.data) > 1 or glob.has_magic(request.data[0]):
        if request.dev or request.test:
            raise CnnappError("--dev/--test: not with one file per class (the folds or a 10% hold-out "
                              f"split them). Received: data={list(request.data)}")
        return "class-files"
    path = Path(request.data[0])
    if path.is_dir():
        return "folder"
    if not path.exists():
        raise CnnappError(f"--data: no such file or folder. Received: data={path}")
    if path.suffix.lower() in (".csv", ".tsv", ".tab") or request.text_column or request.label_column:
        return "csv"
    return "labelled-lines"


def read_text_data(request: TextRequest) -> tuple[TextData, str]:
    """(TextData, source name) for the options."""
    source = detect_source(request)
    data = SOURCES[source](request)
    log.info("%s: %d sentences, classes %s%s%s", data.description["source"], len(data.y), data.class_names,
             f", dev {len(data.y_dev)}" if data.y_dev is not None else "",
             f", test {len(data.y_test)}" if data.y_test is not None else "")
    return data, source


def to_splits(data: TextData, *, seed: int) -> Splits:
    """The fixed splits of a source, the missing ones held out (seeded, stratified)."""
    return make_splits(data.x, data.y, data.class_names, x_val=data.x_dev, y_val=data.y_dev,
                       x_test=data.x_test, y_test=data.y_test, seed=seed, test_fraction=data.test_fraction,
                       description=dict(data.description))


def load_text_data(*, data=None, dev: str | None = None, test: str | None = None, encoding: str = "utf-8",
                   seed: int = 1337, **options) -> tuple[Splits, str]:
    """(splits, default model name): the convenience form of `read_text_data` + `to_splits`."""
    if isinstance(data, (str, Path)):
        data = (str(data),)
    request = TextRequest(data=tuple(data or ()), dev=dev, test=test, encoding=encoding, **options)
    text_data, _ = read_text_data(request)
    return to_splits(text_data, seed=seed), text_data.name
