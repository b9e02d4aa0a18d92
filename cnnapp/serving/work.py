"""Bounded, cancellable request work: the budget one request carries into its worker thread, the
heavy-request slots, and how a request's examples are cut into chunks.

- `Work`: a request's deadline and cancel flag. The worker checks it before every chunk (and
  between explained images), so a request that timed out or whose client left stops computing at
  the next chunk boundary instead of running to its end.
- `Slots`: at most N heavy requests (large bodies, :explain) at once, shared by every event loop
  (REST, gRPC, tests). A slot is released by the worker thread itself when it really stops, not
  when the client is answered: a timed-out request cannot keep the CPU busy while new heavy
  requests are admitted in its place.
- `chunk_bounds`: at most `chunk_examples` examples a chunk, and for encoded images at most
  `CHUNK_COST` bytes of decoded pixels (read from the image headers), so a request of
  decompression bombs is cut one image at a time and stops between images.
- `WorkStats`: counters a test or an operator reads (chunks run, workers and parses in flight).
- `pause_gc` / `resume_gc`: Python's cyclic collector is off while a heavy request runs. Parsing
  and decoding a large body creates millions of lists, and each full collection then walks all
  of them holding the GIL, so the event loop waits longer and the request takes longer (a row-format
  [1,1000,1000,1] pixel body: both shorter without it). Their memory is freed by reference counting
  when the request ends; the collector runs again after.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import struct
import threading
import time

import numpy as np

from cnnapp.serving.errors import DeadlineExceeded

# Decoded bytes (4 bytes a pixel) one chunk of encoded images may expand to: ~85 photos of 500x375 RGB,
# thousands of 28x28 digits; an image larger than this is a chunk of its own.
CHUNK_COST = 64 * 1024 * 1024


class Work:
    """One request's budget: `deadline` (time.monotonic(), None: none) and a cancel flag."""

    __slots__ = ("deadline", "_cancelled", "why")

    def __init__(self, deadline: float | None = None):
        self.deadline = deadline
        self._cancelled = False     # set by one thread, read by another: a plain flag is enough under the GIL
        self.why = ""

    @classmethod
    def within(cls, seconds: float | None) -> "Work":
        return cls(None if seconds is None else time.monotonic() + seconds)

    def cancel(self, why: str = "cancelled") -> None:
        self.why = why
        self._cancelled = True

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    def check(self) -> None:
        """DeadlineExceeded once cancelled or past the deadline: the rest of the request is dropped."""
        if self._cancelled or (self.deadline is not None and time.monotonic() > self.deadline):
            raise DeadlineExceeded("Deadline exceeded: the request took longer than the server's timeout "
                                   "(--rest_api_timeout_in_ms) or the client's deadline"
                                   + (f" ({self.why})" if self.why else ""))


def _grant(future, slots: "Slots") -> None:
    """On the waiter's loop: hand it the slot, or pass the slot on if it stopped waiting."""
    if future.cancelled():
        slots.release()
    else:
        future.set_result(None)


class Slots:
    """A counting semaphore that coroutines of any event loop acquire and any thread releases."""

    def __init__(self, count: int):
        self.count = count
        self._free = count
        self._lock = threading.Lock()
        self._waiters: collections.deque = collections.deque()

    def free(self) -> int:
        with self._lock:
            return self._free

    async def acquire(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            entry = (loop, loop.create_future())
            self._waiters.append(entry)
        try:
            await entry[1]
        except asyncio.CancelledError:
            with self._lock:
                try:
                    self._waiters.remove(entry)
                    granted = False
                except ValueError:
                    granted = entry[1].done() and not entry[1].cancelled()
            if granted:         # given the slot and cancelled in the same moment: give it back
                self.release()
            raise

    def release(self) -> None:
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(_grant, future, self)
                    return
                except RuntimeError:        # that loop has closed: nobody waits there any more
                    continue
            self._free += 1


class WorkStats:
    """Counters of the work in flight (thread-safe): chunks run, workers and JSON parses running."""

    def __init__(self):
        self._lock = threading.Lock()
        self.chunks = 0
        self.running = 0
        self.parsing = 0
        self._changed = threading.Condition(self._lock)

    def add(self, name: str, delta: int = 1) -> None:
        with self._changed:
            setattr(self, name, getattr(self, name) + delta)
            self._changed.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        """True once `predicate(self)` holds (within `timeout` seconds)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout)

    def wait_idle(self, timeout: float) -> bool:
        """True once no worker runs (within `timeout` seconds)."""
        return self.wait(lambda stats: stats.running == 0, timeout)


_gc_lock = threading.Lock()
_gc_state = {"holders": 0, "was_enabled": False}


def pause_gc() -> None:
    """The collector off until every pause_gc has its resume_gc (thread-safe, nested)."""
    with _gc_lock:
        if _gc_state["holders"] == 0:
            _gc_state["was_enabled"] = gc.isenabled()
            gc.disable()
        _gc_state["holders"] += 1


def resume_gc() -> None:
    with _gc_lock:
        _gc_state["holders"] -= 1
        if _gc_state["holders"] == 0 and _gc_state["was_enabled"]:
            gc.enable()


# ---------------------------------------------------------------------------- chunking

def image_pixels(data: bytes) -> int:
    """Width x height read from a PNG, GIF, BMP, JPEG or WebP header (0 when unknown)."""
    try:
        if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
            w, h = struct.unpack(">II", data[16:24])
        elif data[:6] in (b"GIF87a", b"GIF89a"):
            w, h = struct.unpack("<HH", data[6:10])
        elif data[:2] == b"BM":
            w, h = struct.unpack("<ii", data[18:26])
        elif data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            chunk = data[12:16]
            if chunk == b"VP8X":
                w = int.from_bytes(data[24:27], "little") + 1
                h = int.from_bytes(data[27:30], "little") + 1
            elif chunk == b"VP8L":
                bits = int.from_bytes(data[21:25], "little")
                w, h = (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
            else:
                w, h = struct.unpack("<HH", data[26:30])
                w, h = w & 0x3FFF, h & 0x3FFF
        elif data[:2] == b"\xff\xd8":
            w, h = _jpeg_size(data)
        else:
            return 0
    except (struct.error, ValueError):
        return 0
    return abs(int(w)) * abs(int(h))


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    for _ in range(1000):               # markers before the frame header: bounded
        while pos < len(data) and data[pos] == 0xFF:
            pos += 1
        if pos + 3 > len(data):
            break
        marker = data[pos]
        length = int.from_bytes(data[pos + 1:pos + 3], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", data[pos + 4:pos + 8])
            return w, h
        pos += 1 + length
    return 0, 0


def example_costs(inputs: dict[str, np.ndarray]) -> np.ndarray | None:
    """Per example, the bytes its string inputs decode to at most (None: no string inputs)."""
    costs = None
    for array in inputs.values():
        if array.dtype != object or array.ndim != 1:
            continue
        each = np.fromiter((max(len(b), image_pixels(b) * 4) if isinstance(b, bytes) else 0 for b in array),
                           dtype=np.int64, count=len(array))
        costs = each if costs is None else costs + each
    return costs


def chunk_bounds(n: int, chunk_examples: int, costs: np.ndarray | None = None,
                 budget: int = CHUNK_COST) -> list[tuple[int, int]]:
    """[(start, stop)] covering n examples, each at most `chunk_examples` long and, with `costs`,
    at most `budget` in cost unless it is one example."""
    if costs is None:
        return [(s, min(n, s + chunk_examples)) for s in range(0, n, chunk_examples)]
    bounds, start, total = [], 0, 0
    for i in range(n):
        cost = int(costs[i])
        if i > start and (i - start >= chunk_examples or total + cost > budget):
            bounds.append((start, i))
            start, total = i, 0
        total += cost
    bounds.append((start, n))
    return bounds
