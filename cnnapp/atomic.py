"""Files a run writes are whole or absent: written to a temporary file in the same folder, synced, and
renamed over the old one (`os.replace`, atomic on one filesystem). A full disk, a file size limit or a
kill part-way leaves the previous file as it was (or none), never a truncated one that a message or a
rerun would take for a good one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


@contextlib.contextmanager
def _replacing(path: Path, tmp: Path):
    """The block writes `tmp`; then it is fsynced and renamed over `path`. On an error `path` is untouched,
    `tmp` removed, and an OSError names `path`."""
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:
            raise OSError(e.errno, e.strerror, str(path)) from None
        raise
    _sync_folder(path.parent)


def write_atomically(path: str | Path, payload: bytes | str) -> None:
    """Write `payload` to a temporary file beside `path`, fsync it and rename it over `path`; on an error
    the old file is untouched and the temporary one removed. An OSError names `path`."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    path = Path(path)
    with _replacing(path, Path(f"{path}.tmp-{os.getpid()}")) as tmp, open(tmp, "wb") as f:
        f.write(payload)


def save_model_atomically(model, path: str | Path) -> None:
    """`model.save(path)` (a .keras file) through a temporary .keras file beside it, synced and renamed."""
    path = Path(path)
    with _replacing(path, path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")) as tmp:
        model.save(str(tmp), overwrite=True)


def sync_tree(folder: str | Path) -> None:
    """fsync every file and folder under `folder` (before it is renamed into place)."""
    for root, dirs, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        _sync_folder(Path(root))


def _sync_folder(folder: Path) -> None:
    """The rename itself reaches the disk (a folder fsync; skipped where the OS refuses it)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
