"""Data sources: each turns what the user has into `RawData` (examples, integer labels, class names).

A source describes its examples; it need not hold them. In-memory sources (the embedded digits, IDX
files, sentences) give arrays of pixels or strings. File sources (image folders) give an array of
file paths and an `ExampleReader` that decodes one path inside tf.data (`cnnapp.training.input`), so
splits and CV folds are made on the list of files, never on pixels.

Data flows one way: a source here -> `cnnapp.preprocessing` (Keras layers, in tf.data and in the
export) -> a model from `cnnapp.models` -> `cnnapp.training` -> `cnnapp.export`. A source never
normalises or augments; it only reads, checks and labels. `RawData.to_splits` completes the
missing splits (seeded, stratified); cross-validation folds `RawData` instead.

Sources are registered one file each, per kind, in `cnnapp.data.image` and `cnnapp.data.text`
(`SourceRegistry`): the first source (by priority) that claims a request reads it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import logging
import os
import pkgutil
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExampleReader:
    """How one example of a file source becomes a tensor inside tf.data.

    `decode(path)` maps a scalar string tensor (a file path) to the decoded example (uint8 pixels
    [H, W, C] for images); `example_bytes` is the decoded size of one example, from which the cache
    is chosen; `key` is what the decoding depends on (size, channels, ...), part of the disk cache's key.
    """

    decode: Callable | None
    example_bytes: int
    key: dict = field(default_factory=dict)
    what: str = "file"
    skip_bad: bool = False      # a file that fails to decode is skipped and counted instead of stopping the run
    # Sources read in record order (TFDS): `stream(keys)` gives the decoded examples of ascending keys
    # (one split), in that order, instead of `decode` one path at a time.
    stream: Callable | None = None
    files: bool = True          # the keys are file paths (hashed with their size and time)


def decoded_pixels(decoder, image_bytes):
    """`decoder.decode_one` (the export's ImageDecoder) rounded to the uint8 pixels a cache keeps: the one
    decoding of every file and record source."""
    import tensorflow as tf
    return tf.cast(tf.round(decoder.decode_one(image_bytes)), tf.uint8)


def hash_examples(h, part, *, files: bool = False) -> None:
    """Feed one part (examples or labels) into the hash `h`. File paths count with their size and
    modification time, so a changed file changes the hash without reading any file."""
    if part is None:
        return
    x = np.asarray(part)
    if files:
        for path in x.ravel():
            try:
                st = os.stat(path)
                stamp = f"{st.st_size}:{st.st_mtime_ns}"
            except OSError:
                stamp = "missing"
            h.update(f"{path}\0{stamp}\0".encode("utf-8", "surrogatepass"))
    elif x.dtype == object or x.dtype.kind in "US":
        h.update("\0".join(str(v) for v in x.ravel()).encode("utf-8", "surrogatepass"))
    else:
        h.update(np.ascontiguousarray(x).tobytes())


def data_hash(*parts, files: bool = False, extra: bytes = b"") -> str:
    """SHA-256 (16 hex digits) of examples and labels (and `extra`, e.g. a vocabulary): the one fingerprint
    of data in cnnapp (the resume check, the multi-worker agreement, the sweep and the disk cache use it)."""
    h = hashlib.sha256()
    for i, part in enumerate(parts):
        hash_examples(h, part, files=files and i % 2 == 0)   # (x, y, x, y, ...): only examples are files
    h.update(extra)
    return h.hexdigest()[:16]


@dataclass
class Splits:
    """Train / validation / test arrays and the class names they index.

    Images are uint8 arrays of shape [N, H, W, C]; sentences are 1-D object arrays of str.
    Labels are int64 class indices into `class_names`. `test` may be absent (then the validation
    split is reported as the held-out set). `description` says where each split came from, for
    the run log and metrics.json.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    description: dict = field(default_factory=dict)
    reader: ExampleReader | None = None   # file paths to decode in tf.data; None: arrays in memory

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def fingerprint(self, vocabulary=None) -> str:
        """The data hash of the training and validation parts (what shapes the weights), with the
        vocabulary adapted on them when there is one."""
        return data_hash(self.x_train, self.y_train, self.x_val, self.y_val,
                         files=self.reader is not None and self.reader.files,
                         extra="\n".join(vocabulary).encode() if vocabulary is not None else b"")

    def counts(self) -> dict:
        return {
            "train": int(len(self.y_train)),
            "validation": int(len(self.y_val)),
            "test": int(len(self.y_test)) if self.y_test is not None else 0,
        }

    def held_out(self) -> tuple[str, np.ndarray, np.ndarray]:
        """(name, x, y) of the split a run reports: test when there is one, else validation."""
        if self.x_test is not None:
            return "test", self.x_test, self.y_test
        return "validation", self.x_val, self.y_val


@dataclass
class RawData:
    """What a source read: examples with int64 labels indexing `class_names`, and the fixed dev and
    test parts when the source has them. `test_fraction` of `x` is held out when there is no test
    part; `name` is the default model name (runs/<name>/); `info` holds kind-specific facts (an
    image source's size and channels)."""

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]
    name: str
    x_dev: np.ndarray | None = None
    y_dev: np.ndarray | None = None
    x_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    description: dict = field(default_factory=dict)
    test_fraction: float = 0.1
    info: dict = field(default_factory=dict)
    reader: ExampleReader | None = None   # set when `x` holds file paths (see ExampleReader)

    def fingerprint(self) -> str:
        """The data hash of every part the source read."""
        return data_hash(self.x, self.y, self.x_dev, self.y_dev, self.x_test, self.y_test,
                         files=self.reader is not None and self.reader.files)

    @property
    def has_fixed_splits(self) -> bool:
        return self.x_test is not None or self.x_dev is not None

    def to_splits(self, *, seed: int, validate_on_test: bool = False) -> Splits:
        """The fixed splits of the source, the missing ones held out (seeded, stratified); see
        `make_splits` for `validate_on_test`."""
        return make_splits(self.x, self.y, self.class_names, x_val=self.x_dev, y_val=self.y_dev,
                           x_test=self.x_test, y_test=self.y_test, seed=seed, test_fraction=self.test_fraction,
                           validate_on_test=validate_on_test, description=dict(self.description),
                           reader=self.reader)

    def fold_splits(self, train_idx: np.ndarray, test_idx: np.ndarray, *, seed: int, what: str) -> Splits:
        """One cross-validation fold: train on `train_idx` (10% of it held out for early stopping)."""
        return make_splits(self.x[train_idx], self.y[train_idx], self.class_names, x_test=self.x[test_idx],
                           y_test=self.y[test_idx], seed=seed, description={**self.description, "test": what},
                           reader=self.reader)


def parse_class_names(value: str | None) -> tuple[str, ...]:
    """`--class-names`: a comma list (`DESC,ENTY,ABBR`) or `@FILE` with one name per line; () for None."""
    if not value:
        return ()
    if value.startswith("@"):
        from pathlib import Path
        try:
            text = Path(value[1:]).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CnnappError(f"--class-names: cannot read the names file ({getattr(e, 'strerror', None) or e}). "
                              f"Received: {value}") from None
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = [v.strip() for v in value.split(",")]
    if not names or any(not n for n in names) or len(set(names)) != len(names):
        raise CnnappError(f"--class-names: expected distinct, non-empty names (a comma list or @FILE, one per line). "
                          f"Received: {value}")
    return tuple(names)


def with_class_names(data: RawData, names: tuple[str, ...]) -> RawData:
    """`data` whose integer class names ('0', '1', ... in numeric order) are replaced, in that order, by
    `names`; `data` itself when `names` is empty."""
    if not names:
        return data
    current = list(data.class_names)
    if not all(str(c).lstrip("-").isdigit() for c in current):
        raise CnnappError(f"--class-names: is for integer labels; this data's classes are named already "
                          f"{current[:10]}. Received: {','.join(names)}")
    if len(names) != len(current):
        raise CnnappError(f"--class-names: the data has {len(current)} classes ({', '.join(current[:10])}), "
                          f"so give {len(current)} names. Received: {len(names)} names: {','.join(names)}")
    log.info("class names: %s", ", ".join(f"{c}={n}" for c, n in zip(current, names)))
    return dataclasses.replace(data, class_names=list(names),
                               description={**data.description, "class_names": "from --class-names"})


# ---------------------------------------------------------------------------- the stratifier

def _deal(y: np.ndarray, parts: int, rng: np.random.Generator) -> np.ndarray:
    """Each example's part 0..parts-1: every class shuffled and dealt round-robin, continuing where
    the previous class stopped, so part sizes differ by at most one and classes stay balanced."""
    part_of = np.empty(len(y), dtype=np.int64)
    offset = 0
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        part_of[idx] = (np.arange(len(idx)) + offset) % parts
        offset = (offset + len(idx)) % parts
    return part_of


def stratified_folds(y: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """K disjoint index arrays covering `y`, stratified by class and seeded."""
    part_of = _deal(np.asarray(y), k, np.random.default_rng(seed))
    return [np.flatnonzero(part_of == f) for f in range(k)]


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (keep, held_out): `fraction` of every class held out (at least one of a class with
    two or more examples, never all of one), seeded and repeatable."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y)
    keep, held = [], []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        rng.shuffle(idx)
        n_held = min(max(int(round(len(idx) * fraction)), 1), len(idx) - 1) if len(idx) > 1 else 0
        held.append(idx[:n_held])
        keep.append(idx[n_held:])
    keep_idx, held_idx = np.concatenate(keep), np.concatenate(held)
    rng.shuffle(keep_idx)
    rng.shuffle(held_idx)
    return keep_idx, held_idx


def make_splits(
    x_train, y_train, class_names, *, x_test=None, y_test=None, x_val=None, y_val=None,
    validation_fraction: float = 0.1, test_fraction: float = 0.1, seed: int = 1337,
    validate_on_test: bool = False, description: dict | None = None, reader: ExampleReader | None = None,
) -> Splits:
    """Complete the missing splits with seeded stratified hold-outs and check the labels.

    - no validation: `validation_fraction` of train is held out for early stopping;
    - no test either: `test_fraction` of the data is held out first, so the reported accuracy
      is on data that neither trained nor selected the model;
    - no validation and `validate_on_test` (a run that reads nothing of validation: it keeps the last
      epoch of a schedule followed to its end): nothing more is held out of train, and the test part
      is shown as the per-epoch validation curve.
    """
    description = {k: v for k, v in (description or {}).items() if v is not None}
    y_train = np.asarray(y_train, dtype=np.int64)
    check_classes(y_train, class_names)
    if x_test is None and x_val is None and test_fraction > 0:
        keep, held = stratified_split(y_train, test_fraction, seed)
        x_test, y_test = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        description.setdefault("test", f"seeded stratified {test_fraction:.0%} of the data (seed {seed})")
    if x_val is None and validate_on_test and x_test is not None:
        x_val, y_val = x_test, y_test
        description["validation"] = (f"{description.get('test', 'the test part')}, shown each epoch and never "
                                     f"chosen on (the run keeps its last epoch)")
    elif x_val is None:
        keep, held = stratified_split(y_train, validation_fraction, seed + 1)
        x_val, y_val = x_train[held], y_train[held]
        x_train, y_train = x_train[keep], y_train[keep]
        description.setdefault(
            "validation", f"seeded stratified {validation_fraction:.0%} of train (seed {seed + 1})")
    splits = Splits(
        x_train=x_train, y_train=y_train,
        x_val=x_val, y_val=np.asarray(y_val, dtype=np.int64),
        x_test=x_test, y_test=None if y_test is None else np.asarray(y_test, dtype=np.int64),
        class_names=[str(c) for c in class_names], description=description, reader=reader,
    )
    if len(splits.y_val) == 0:
        raise CnnappError(
            f"too little data to hold out a validation split: {len(splits.y_train)} training examples.")
    return splits


def check_classes(y: np.ndarray, class_names) -> None:
    """At least two classes, and every label indexes a class name."""
    present = np.unique(y)
    if len(class_names) < 2 or len(present) < 2:
        raise CnnappError(
            "a classifier needs at least 2 classes. "
            f"Received: {len(present)} class(es) in the data: {list(class_names)[:5]}")
    if present.min() < 0 or present.max() >= len(class_names):
        raise CnnappError(
            f"labels must be 0..{len(class_names) - 1}. Received: labels {present.min()}..{present.max()}")


# ---------------------------------------------------------------------------- source registries

@dataclass(frozen=True)
class Source:
    name: str
    load: Callable                    # request -> RawData
    claims: Callable                  # request -> bool
    priority: int                     # lower is asked first
    description: str


class SourceRegistry:
    """The sources of one kind: every module of `package` registers its own with `register`.

    >>> @TEXT_SOURCES.register("jsonl", claims=lambda r: ..., priority=30)
    ... def load_jsonl(request) -> RawData: ...
    """

    def __init__(self, package: str, kind: str):
        self.package, self.kind = package, kind
        self._sources: dict[str, Source] = {}

    def register(self, name: str, *, claims: Callable, priority: int):
        def wrap(fn):
            doc = (fn.__doc__ or "").strip().splitlines()
            self._sources[name] = Source(name, fn, claims, priority, doc[0] if doc else "")
            return fn
        return wrap

    def sources(self) -> dict[str, Source]:
        module = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(module.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        return dict(sorted(self._sources.items(), key=lambda kv: (kv[1].priority, kv[0])))

    def detect(self, request) -> Source:
        for source in self.sources().values():
            if source.claims(request):
                return source
        raise CnnappError(f"--data: no {self.kind} source reads this. Received: {request}")

    def read(self, request) -> tuple[RawData, str]:
        """(RawData, source name) for a request."""
        source = self.detect(request)
        data = source.load(request)
        log.info("%s: %d examples, classes %s%s%s", data.description.get("source", source.name), len(data.y),
                 data.class_names, f", dev {len(data.y_dev)}" if data.y_dev is not None else "",
                 f", test {len(data.y_test)}" if data.y_test is not None else "")
        return data, source.name
