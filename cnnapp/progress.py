"""Progress for the phases that are not epochs: listing and checking files, caching, the vocabulary,
the held-out evaluation and the export. No phase longer than a few seconds is silent.

On a terminal a phase redraws one line (count, rate, ETA) twice a second; otherwise (a log file, CI)
it writes a line every `every` seconds. A phase that ends within `quiet` seconds prints nothing, so
small data stays as quiet as before.

>>> progress = Progress("checking image files", total=len(paths), unit="files")
>>> for i, path in enumerate(paths): ...; progress.update(i + 1)
>>> progress.done()

>>> with heartbeat("exporting saved_models/cats/3"):   # no count: elapsed time only
...     export()
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time

log = logging.getLogger("cnnapp.progress")
EVERY = 10.0        # seconds between lines when stderr is not a terminal
QUIET = 2.0         # a phase shorter than this prints nothing


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    def __init__(self, what: str, *, total: int | None = None, unit: str = "", every: float = EVERY,
                 quiet: float = QUIET, stream=None):
        self.what, self.total, self.unit = what, total, unit
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every, self.quiet = (0.5 if self.tty else every), quiet
        self.start = self.last = time.monotonic()
        self.count, self.shown = 0, False

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.count / elapsed
        unit = f" {self.unit}" if self.unit else ""
        text = f"{self.what}: {self.count:,}"
        if self.total:
            text += f"/{self.total:,}{unit} ({100 * self.count / self.total:.0f}%)"
        else:
            text += unit
        text += f", {rate:,.0f}/s" if rate >= 1 else f", {rate:.2f}/s"
        if self.total and rate > 0 and self.count < self.total:
            text += f", ETA {_duration((self.total - self.count) / rate)}"
        return text + f", {_duration(elapsed)} elapsed"

    def update(self, count: int) -> None:
        self.count = count
        now = time.monotonic()
        if now - self.last < self.every or now - self.start < self.quiet:
            return
        self.last, self.shown = now, True
        if self.tty:
            self.stream.write("\r" + self.line(now) + "\x1b[K")
            self.stream.flush()
        else:
            log.info("%s", self.line(now))

    def done(self) -> None:
        now = time.monotonic()
        if not self.shown and now - self.start < self.quiet:
            return
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
        unit = f" {self.unit}" if self.unit else ""
        log.info("%s: %s%s in %s", self.what, f"{self.count:,}", unit, _duration(now - self.start))


@contextlib.contextmanager
def heartbeat(what: str, *, every: float = EVERY, quiet: float = QUIET):
    """A line every `every` seconds while the block runs (elapsed time), and one at its end if it
    took longer than `quiet` seconds: for steps that report no count (an export, a model load)."""
    stop = threading.Event()
    start = time.monotonic()

    def beat():
        while not stop.wait(every):
            log.info("%s: still working, %s elapsed", what, _duration(time.monotonic() - start))
    thread = threading.Thread(target=beat, name="cnnapp-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if time.monotonic() - start >= quiet:
            log.info("%s: done in %s", what, _duration(time.monotonic() - start))
