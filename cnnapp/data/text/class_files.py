"""One file per class, one sentence per line (the rt-polarity layout), as several --data or a glob.

The class is the file's last suffix when all files share a stem (`rt-polarity.pos`,
`rt-polarity.neg` -> pos, neg), else the stem (`good.txt` -> good).
"""

from __future__ import annotations

import glob
import logging
from pathlib import Path

import numpy as np

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES, TextRequest, expand_data_files, read_lines
from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


def class_of(paths: list[Path]) -> list[str]:
    stems = {p.name.rsplit(".", 1)[0] for p in paths}
    if len(stems) == 1 and all("." in p.name for p in paths):
        return [p.name.rsplit(".", 1)[1] for p in paths]        # rt-polarity.pos -> pos
    return [p.name.split(".")[0] for p in paths]                # positive.txt -> positive


def without_combined_files(data, paths: list[Path]) -> list[Path]:
    """A glob's matches without a combined `.all` file beside the class files (`rt-polarity.*` also
    matches `rt-polarity.all`, which is every class's sentences with a label, not a class)."""
    from_globs = {Path(m) for item in data if glob.has_magic(item) for m in glob.glob(item)}
    combined = [p for p in paths if p in from_globs and p.suffix == ".all"]
    kept = [p for p in paths if p not in combined]
    if combined and len(kept) >= 2:
        log.info("--data: skipping %s: a combined file of all classes, not a class of its own",
                 ", ".join(map(str, combined)))
        return kept
    return paths


def check_no_overlap(paths: list[Path], per_file: list[set]) -> None:
    """Refuse a file whose sentences are mostly the other files' (a combined file given as a class)."""
    for i, (path, lines) in enumerate(zip(paths, per_file)):
        others = set().union(*(s for j, s in enumerate(per_file) if j != i))
        # A combined file may carry a label first: `0 simplistic , silly and tedious .`
        shared = sum(1 for line in lines if line in others or line.partition(" ")[2].strip() in others)
        if lines and shared > len(lines) / 2:
            raise CnnappError(f"--data: {shared} of the {len(lines)} sentences of {path} are also in the "
                              f"other files: it looks like a combined file, not a class; leave it out. "
                              f"Received: data={[str(p) for p in paths]}")


@TEXT_SOURCES.register("class-files", claims=lambda r: len(r.data) > 1 or (len(r.data) == 1 and glob.has_magic(r.data[0])),
                       priority=5)
def load_class_files(request: TextRequest) -> RawData:
    """One file per class (several --data, or a quoted glob), one sentence per line."""
    if request.dev or request.test:
        raise CnnappError("--dev/--test: not with one file per class (the folds or a 10% hold-out "
                          f"split them). Received: data={list(request.data)}")
    paths = without_combined_files(request.data, expand_data_files(request.data))
    names = class_of(paths)
    if len(set(names)) != len(names):
        raise CnnappError(f"--data: two files give the same class name {names}. "
                          f"Received: data={[str(p) for p in paths]}")
    class_names = sorted(names)
    sentences, labels, per_file = [], [], []
    for path, name in zip(paths, names):
        lines = read_lines(path, encoding=request.encoding, arg="--data")
        sentences += [line.strip() for line in lines]
        labels += [class_names.index(name)] * len(lines)
        per_file.append({line.strip() for line in lines})
    check_no_overlap(paths, per_file)
    stem = paths[0].name.split(".")[0]
    return RawData(x=np.asarray(sentences, dtype=object), y=np.asarray(labels, dtype=np.int64),
                   class_names=class_names, name=stem, test_fraction=0.1,
                   description={"source": "one file per class: " + ", ".join(
                       f"{n}={p}" for p, n in sorted(zip(paths, names), key=lambda t: t[1]))})
