"""Examples -> tf.data: the one input pipeline of training, validation and evaluation.

    arrays in memory (digits, IDX, sentences): preprocessed once and cached in memory, one tensor an
        example (small data, as always), in blocks of 1,024 (a million sentences: no per-example cost),
        or, past the memory budget, kept raw and preprocessed batch by batch
    files (image folders) and record streams (TFDS): paths or keys -> decode in parallel through the
        export's ImageDecoder -> cache of uint8 pixels (memory | disk | none) -> shuffle -> batch ->
        preprocess -> (augment) -> prefetch

The cache is chosen once per run from the decoded size (`plan_cache`): data that fits a memory budget
(1/32 of the machine's memory, or --memory-budget) is cached in memory; larger data is cached on disk
under the run directory (or `--cache DIR`), where the next run on the same files and decoding finds
it; `--cache memory|disk|none` overrides. Files are put in one seeded random order and, past 2,048 of
them, shuffled each epoch through a window of decoded examples (as Keras' own folder pipeline is), so
the first step waits for no full pass and memory stays bounded whatever the data's size.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import tensorflow as tf

from cnnapp.data import ExampleReader, data_hash
from cnnapp.errors import CnnappError, tf_error_reason

log = logging.getLogger(__name__)
AUTOTUNE = tf.data.AUTOTUNE
CACHE_MODES = ("memory", "disk", "none")
MEMORY_FRACTION = 32          # decoded data up to 1/32 of the machine's memory is cached in memory
SHUFFLE_BUFFER_BYTES = 64 * 2**20    # decoded files are shuffled through at most this much memory
SMALL_PART = 2048           # parts of decoded files up to this size are shuffled whole each epoch


def memory_budget(asked: int | None = None) -> int:
    """`asked` (--memory-budget), else 1/32 of the machine's memory."""
    if asked is not None:
        return asked
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // MEMORY_FRACTION


def _size(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


@dataclass(frozen=True)
class CachePlan:
    """Where decoded examples are kept between epochs: `mode` memory | disk | none; `folder` for disk."""

    mode: str
    folder: Path | None = None
    budget: int | None = None     # bytes of decoded or preprocessed data kept in memory (None: the machine's)

    def file_for(self, label: str, key: str) -> str:
        """The cache file prefix of one part; a leftover of another key (other files, another decoding) or of
        an interrupted first epoch is removed, so the cache is rebuilt instead of read."""
        self.folder.mkdir(parents=True, exist_ok=True)
        prefix = self.folder / f"{label}-{key}"
        complete = Path(f"{prefix}.index").exists()
        for old in self.folder.glob(f"{label}-*"):
            if not old.name.startswith(f"{label}-{key}.") or not complete:
                old.unlink(missing_ok=True)
        if complete:
            log.info("cache: reusing %s", prefix)
        return str(prefix)


def check_cache(value: str | None) -> None:
    """--cache: memory, disk, none, or a folder (made if missing; not a file)."""
    if value is None or value in CACHE_MODES:
        return
    if not value.strip() or Path(value).is_file():
        raise CnnappError(f"--cache: choose memory, disk, none or a folder. Received: cache={value!r}")


def plan_cache(asked: str | None, *, reader: ExampleReader | None, examples: int, default_folder: Path,
               budget: int | None = None) -> CachePlan:
    """The cache for `examples` decoded examples, and one line saying what was chosen and why. `budget`:
    --memory-budget in bytes (None: 1/32 of the machine's memory)."""
    check_cache(asked)
    budget = memory_budget(budget)
    if reader is None:
        return CachePlan("memory", budget=budget)   # arrays in memory: preprocessed once when that fits the budget
    decoded = examples * reader.example_bytes
    if asked in ("memory", "none"):
        plan, why = CachePlan(asked, budget=budget), "as --cache asks"
    elif asked == "disk" or (asked is not None and asked not in CACHE_MODES):
        folder = default_folder if asked == "disk" else Path(asked)
        plan, why = CachePlan("disk", folder, budget), "as --cache asks"
    elif decoded <= budget:
        plan, why = CachePlan("memory", budget=budget), f"within the memory budget of {_size(budget)}"
    else:
        plan, why = CachePlan("disk", default_folder, budget), (f"over the memory budget of {_size(budget)}; "
                                                                f"--cache memory|none|DIR to choose")
    where = {"memory": "in memory", "none": "not cached (decoded every epoch)",
             "disk": f"on disk in {plan.folder}"}[plan.mode]
    log.info("cache: %s decoded %ss (%s) %s, %s", f"{examples:,}", reader.what, _size(decoded), where, why)
    return plan


class DecodeCounter:
    """Counts the examples a file pipeline decoded (under --skip-bad-images, to count the files skipped)."""

    def __init__(self):
        self.variable = tf.Variable(0, dtype=tf.int64, trainable=False)

    def count(self, *element):
        self.variable.assign_add(1)
        return element

    @property
    def value(self) -> int:
        return int(self.variable.numpy())


def make_input(x, y, *, batch_size: int, preprocess: Callable, reader: ExampleReader | None = None,
               augment=None, shuffle_seed: int | None = None, options: tf.data.Options | None = None,
               cache: CachePlan = CachePlan("memory"), label: str = "data",
               counter: DecodeCounter | None = None) -> tf.data.Dataset:
    """Batches of (model input, label) for one part; `label` names the part's disk cache ("train", ...)."""
    late = widen = shuffled = False   # preprocess each batch after the cache; int32 ids cached; shuffled already
    if reader is None:
        per_example, budget = _preprocessed_bytes(x, preprocess), memory_budget(cache.budget)
        if len(y) * per_example > budget:
            log.info("cache: %s examples preprocessed would take %s, over the memory budget of %s: kept as they are "
                     "and preprocessed batch by batch", f"{len(y):,}", _size(len(y) * per_example), _size(budget))
            ds, late = tf.data.Dataset.from_tensor_slices((x, y)), True
        elif len(y) * (per_example + ELEMENT_OVERHEAD) <= budget // 2:
            ds = _from_arrays(x, y, preprocess=preprocess)         # small: one cached tensor an example
        else:
            ds, widen, shuffled = _blocks(x, y, preprocess=preprocess, shuffle_seed=shuffle_seed), True, True
    else:
        ds, late = _from_files(x, y, reader=reader, cache=cache, label=label, shuffle_seed=shuffle_seed,
                               counter=counter), True
    if shuffle_seed is not None and not shuffled:
        buffer = len(y)
        if reader is not None and len(y) > SMALL_PART:
            # Decoded examples: the buffer fills before the first step and holds them, so it is a window
            # (as Keras' own folder pipeline has) over files put in a seeded random order once.
            buffer = max(batch_size * 8, 1024)
            buffer = min(buffer, max(batch_size, min(SHUFFLE_BUFFER_BYTES, memory_budget(cache.budget) // 4)
                                     // max(reader.example_bytes, 1)))
        if reader is None or cache.mode != "none" or reader.stream is not None:   # streamed files: shuffled as paths
            ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if late:
        ds = ds.map(lambda a, b: (preprocess(a), b), num_parallel_calls=AUTOTUNE)
    if widen:
        ds = ds.map(lambda a, b: (tf.cast(a, tf.int64) if a.dtype == tf.int32 else a, b))
    if augment is not None:
        # One batch at a time: the layers draw from one seeded generator, and parallel calls would
        # take its draws in a different order each run (prefetch still overlaps it with training).
        ds = ds.map(lambda a, b: (augment(a, training=True), b))
    if options is not None:
        ds = ds.with_options(options)
    return ds.prefetch(AUTOTUNE)


def example_input_bytes(splits, preprocess) -> int:
    """The bytes of one training example as the model takes it (float32 pixels of decoded files)."""
    if splits.reader is not None:
        return splits.reader.example_bytes * 4
    return _preprocessed_bytes(splits.x_train, preprocess)


def _preprocessed_bytes(x, preprocess) -> int:
    """The bytes of one example after preprocessing (float pixels, token ids), from the first one."""
    if len(x) == 0:
        return 0
    return int(np.asarray(preprocess(tf.constant(np.asarray(x[:1])))).nbytes)


ELEMENT_OVERHEAD = 256   # bytes a cached or shuffled one-example tensor costs beyond its data
BLOCK = 1024              # examples preprocessed and cached together in the block layout


def _blocks(x, y, *, preprocess, shuffle_seed) -> tf.data.Dataset:
    """Large arrays (a million sentences): preprocessed and cached in blocks of 1,024 (token ids as int32),
    so the cache costs its data and no per-example overhead. A training part is put in a seeded random
    order once; each epoch then reads the blocks through a 64-block shuffle and mixes 16 blocks at a
    time, so memory stays at the cache plus a few blocks however large the data."""
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(len(y))
        x, y = np.asarray(x)[order], np.asarray(y)[order]

    def narrow(a, b):
        a = preprocess(a)
        return (tf.cast(a, tf.int32) if a.dtype == tf.int64 else a), b
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BLOCK).map(narrow, num_parallel_calls=AUTOTUNE).cache()
    if shuffle_seed is not None:   # a window of blocks, so the first step need not wait for the whole pass
        ds = ds.shuffle(min(-(-len(y) // BLOCK), 64), seed=shuffle_seed, reshuffle_each_iteration=True)
    ds = ds.unbatch().apply(tf.data.experimental.assert_cardinality(len(y)))
    if shuffle_seed is not None:
        ds = ds.shuffle(16 * BLOCK, seed=shuffle_seed + 1, reshuffle_each_iteration=True)
    return ds


def _from_arrays(x, y, *, preprocess) -> tf.data.Dataset:
    """Preprocessing is deterministic, so it runs once (in batches of BLOCK) and is cached."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.batch(BLOCK).map(lambda a, b: (preprocess(a), b), num_parallel_calls=AUTOTUNE).unbatch()
    # unbatch() loses the cardinality; restating it keeps Keras's progress bar and epoch end exact.
    return ds.apply(tf.data.experimental.assert_cardinality(len(y))).cache()


def _from_files(paths, labels, *, reader: ExampleReader, cache: CachePlan, label: str, shuffle_seed,
                counter) -> tf.data.Dataset:
    paths, labels = np.asarray(paths, dtype=object).astype(str), np.asarray(labels, dtype=np.int64)
    if reader.stream is not None:
        # Records are read in their stored order: the part's keys ascending; shuffled by a buffer after.
        order = np.argsort(paths, kind="stable")
        paths, labels = paths[order], labels[order]
        ds = tf.data.Dataset.zip((reader.stream(paths), tf.data.Dataset.from_tensor_slices(labels)))
    else:
        if shuffle_seed is not None and cache.mode != "none":
            # A cache keeps one order: a seeded random one, so the bounded shuffle buffer mixes the classes.
            order = np.random.default_rng(shuffle_seed).permutation(len(paths))
            paths, labels = paths[order], labels[order]
        ds = tf.data.Dataset.from_tensor_slices((paths, labels))
        if shuffle_seed is not None and cache.mode == "none":
            ds = ds.shuffle(len(paths), seed=shuffle_seed, reshuffle_each_iteration=True)
        ds = ds.map(lambda p, b: (reader.decode(p), b), num_parallel_calls=AUTOTUNE, deterministic=True)
    if reader.skip_bad:
        ds = ds.ignore_errors()
    if cache.mode == "memory":
        ds = ds.cache()
    elif cache.mode == "disk":
        key = data_hash(paths, labels, files=reader.files) + "-" + data_hash(
            np.asarray([repr(sorted(reader.key.items()))], dtype=object))[:8]
        ds = ds.cache(cache.file_for(label, key))
    if counter is not None:   # after the cache: it counts every epoch's examples
        ds = ds.map(counter.count)
    return ds


def is_decode_error(error: Exception) -> bool:
    return isinstance(error, (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, tf.errors.DataLossError))


def name_undecodable(parts, reader: ExampleReader, error: Exception, *, arg: str = "--data") -> CnnappError:
    """The one-line error for a file that failed to decode mid-run: finds which (every file of `parts`
    decoded once more, in parallel) and names it with the decoder's reason."""
    from cnnapp.progress import Progress
    if reader.decode is None:   # a stream (TFDS): its own reason is all there is
        return CnnappError(f"{arg}: reading the data failed ({tf_error_reason(error)}). Received: {arg}")
    paths = np.concatenate([np.asarray(p, dtype=object).astype(str) for p in parts if p is not None])
    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), paths))
    # The pixels are kept in the output: a decode whose result is unused would be optimised away.
    ds = ds.map(lambda i, p: (i, reader.decode(p)), num_parallel_calls=AUTOTUNE).ignore_errors()
    seen = np.zeros(len(paths), dtype=bool)
    progress = Progress("finding the file that failed to decode", total=len(paths), unit="files")
    for n, (i, _) in enumerate(ds.batch(256).as_numpy_iterator()):
        seen[i] = True
        progress.update(min((n + 1) * 256, len(paths)))
    progress.done()
    bad = np.flatnonzero(~seen)
    if not len(bad):
        return CnnappError(f"{arg}: reading the data failed ({tf_error_reason(error)}). Received: {arg}")
    path = paths[bad[0]]
    try:
        reader.decode(tf.constant(path))
        reason = tf_error_reason(error)
    except Exception as e:   # noqa: BLE001 - the decoder's own reason, whatever its type
        reason = tf_error_reason(e)
    more = f" ({len(bad)} such files)" if len(bad) > 1 else ""
    return CnnappError(f"{arg}: not a readable image ({reason}){more}; pass --skip-bad-images to skip such files. "
                       f"Received: {path}")
