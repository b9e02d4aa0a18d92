"""One run at a time in a run folder: an OS advisory lock (`fcntl.flock`) on runs/<name>/.lock.

A second run with the same --name would "resume" the first one's backup while it trains, and both
would append to one history.csv and export. The lock is held for the whole run (cross-validation
folds and ensemble members run inside it) and the kernel drops it when its process dies, however it
dies: a killed run leaves no stale lock. The file holds the holder's pid and command, for the message
the second run prints:

    Error: --name: runs/x is in use by another run (pid 1234: cnnapp train-image --name x); wait for
    it or choose another --name. Received: name=x

Under multi-worker training every worker locks its own file (worker 0, the chief: `.lock`; worker i:
`.lock-worker-i`): the workers of one job do not lock each other out, and a second job is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import sys
from pathlib import Path
from typing import Iterator

from cnnapp.errors import CnnappError

LOCK_FILE = ".lock"


def lock_file_name(worker_index: int = 0) -> str:
    return LOCK_FILE if worker_index == 0 else f"{LOCK_FILE}-worker-{worker_index}"


def this_command() -> str:
    """This process's command line as a user typed it (`cnnapp train-image --name x`)."""
    argv = list(sys.argv) or ["python"]
    first = os.path.basename(argv[0])
    if first in ("cnnapp", "__main__.py"):
        first = "cnnapp"
    return shlex.join([first, *argv[1:]])


@contextlib.contextmanager
def run_folder_lock(folder: str | Path, *, name: str, worker_index: int = 0,
                    command: str | None = None) -> Iterator[Path]:
    """Hold the lock of `folder` (made if missing) for the `with` block; a one-line CnnappError naming
    the holder (pid and command) when another process holds it. On leaving, the lock file is removed,
    and so is `folder` and any parent this call made, when nothing else was written there."""
    folder = Path(folder)
    made = _make_folders(folder)
    path = folder / lock_file_name(worker_index)
    try:
        fd = _acquire(path, name=name, folder=folder)
    except BaseException:
        _remove_empty(made)
        raise
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n{command or this_command()}\n".encode(), 0)
        yield path
    finally:
        # Unlinked while still held: a process waiting on the old file finds it gone and retries (_acquire).
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)
        _remove_empty(made)


def _acquire(path: Path, *, name: str, folder: Path) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise CnnappError(f"--name: {folder} is in use by another run ({holder}); wait for it or choose "
                              f"another --name. Received: name={name}") from None
        except BaseException:
            os.close(fd)
            raise
        try:   # the holder we waited on may have removed the file we opened: lock the one at `path`
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _holder(fd: int) -> str:
    try:
        pid, _, command = os.pread(fd, 4096, 0).decode("utf-8", "replace").partition("\n")
    except OSError:
        pid, command = "", ""
    pid, command = pid.strip(), command.strip()
    return f"pid {pid}: {command}" if pid.isdigit() else "a process that is starting"


def _make_folders(folder: Path) -> list[Path]:
    """Make `folder` and its missing parents; the ones made, deepest first."""
    missing = []
    p = folder
    while not p.exists() and p != p.parent:
        missing.append(p)
        p = p.parent
    folder.mkdir(parents=True, exist_ok=True)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:
        try:
            f.rmdir()
        except OSError:   # something was written there (or another run made it): kept
            return
