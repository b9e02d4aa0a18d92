"""The export layout, known here and nowhere else: `<base>/<name>/<version>/` (TF Serving's).

- a *model folder* `<base>/<name>/` holds numeric *version folders*, ASCII digits only ("1", "12");
- a version folder holds a SavedModel (`saved_model.pb`, or `.pbtxt`) and cnnapp's metadata file
  `assets.extra/cnnapp.json` (TF Serving ignores assets.extra), and usually the same network as a
  LiteRT model in `assets.extra/litert/` (`model.tflite`, `meta.json`; cnnapp.export.litert);
- versions are written to hidden `.tmp-<version>-*` folders beside them and renamed into place, so a
  reader never sees half a version.

Export, inference and serving all import this module; it imports nothing heavier than the standard
library and `cnnapp.errors`.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

from cnnapp.errors import CnnappError

METADATA_FILE = Path("assets.extra") / "cnnapp.json"
LITERT_DIR = Path("assets.extra") / "litert"           # model.tflite + meta.json (+ vocabulary.txt)
LITERT_META = LITERT_DIR / "meta.json"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
TMP_PREFIX = ".tmp-"
# A model name becomes a URL path segment and a folder name: one path component, no tricks.
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ASCII_DIGITS = re.compile(r"^[0-9]{1,18}$")


def is_version_name(name: str) -> bool:
    """"12" yes; "²", "１", "١", "-1", "1.0" and absurdly long numbers no (str.isdigit takes the first three)."""
    return bool(_ASCII_DIGITS.match(name))


def parse_version(text: str) -> int | None:
    """The version number a URL or folder names, or None when it is not a plain ASCII number."""
    return int(text) if is_version_name(text) else None


def is_model_name(name: str) -> bool:
    return bool(MODEL_NAME.match(name or "")) and name not in (".", "..")


def check_model_name(name: str, arg: str = "--name") -> str:
    """`name` as it is, or a one-line error: names are one path component."""
    if not is_model_name(name):
        raise CnnappError(f"{arg}: a model name is one folder name: a letter or digit, then letters, digits, "
                          f"'_', '-', '.'. "
                          f"Received: {name!r}")
    return name


def has_saved_model(folder: Path) -> bool:
    return any((folder / f).is_file() for f in SAVED_MODEL_FILES)


def version_dirs(model_dir: str | Path) -> dict[int, Path]:
    """{version: folder} of the complete versions in a model folder (half-written ones are hidden)."""
    try:
        children = list(Path(model_dir).iterdir())
    except OSError:
        return {}
    return {int(p.name): p for p in children if is_version_name(p.name) and has_saved_model(p)}


def latest_version_dir(model_dir: str | Path) -> Path | None:
    versions = version_dirs(model_dir)
    return versions[max(versions)] if versions else None


def next_version(model_dir: str | Path) -> int:
    """One more than the highest numeric folder (complete or not), 1 for a new model."""
    model_dir = Path(model_dir)
    taken = [int(p.name) for p in model_dir.iterdir() if is_version_name(p.name)] if model_dir.is_dir() else []
    return max(taken, default=0) + 1


def model_dirs(base: str | Path) -> dict[str, Path]:
    """{name: folder} of the model folders under a base path that hold at least one version."""
    try:
        children = sorted(Path(base).iterdir())
    except OSError:
        return {}
    return {p.name: p for p in children if p.is_dir() and is_model_name(p.name) and version_dirs(p)}


def resolve_version_dir(path: str | Path, arg: str = "MODEL") -> Path:
    """A version folder as it is; a model folder -> its highest complete version."""
    path = Path(path)
    if has_saved_model(path):
        return path
    if not path.is_dir():
        raise CnnappError(f"{arg}: no such model folder. Received: {path}")
    latest = latest_version_dir(path)
    if latest is None:
        raise CnnappError(f"{arg}: no SavedModel here (expected saved_model.pb or numeric version folders). "
                          f"Received: {path}")
    return latest


def read_metadata(version_dir: str | Path) -> dict:
    """cnnapp's metadata of a version ({} for a SavedModel cnnapp did not write)."""
    path = Path(version_dir) / METADATA_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_metadata(version_dir: str | Path, metadata: dict) -> None:
    path = Path(version_dir) / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")


def stale_tmp_dirs(model_dir: str | Path, *, older_than: float | None = None) -> list[Path]:
    """Hidden `.tmp-*` folders of exports that never finished (a killed run), older than a time."""
    older_than = time.time() if older_than is None else older_than
    try:
        children = list(Path(model_dir).iterdir())
    except OSError:
        return []
    return [p for p in children if p.name.startswith(TMP_PREFIX) and p.is_dir()
            and os.stat(p).st_mtime < older_than]
