"""Server-side batching with TF Serving's parameters: concurrent requests become one signature call.

Requests are queued per key (signature and the shapes past the batch dimension, so only tensors
that can be concatenated share a batch). A batch closes when it holds `max_batch_size` examples or
its oldest request has waited `batch_timeout_micros`; `num_batch_threads` threads run closed
batches; beyond `max_enqueued_batches` waiting batches a request is refused (503), as in TF Serving.
If a merged call fails on bad input (one undecodable image), each request is retried alone so one
bad request never fails the others.

A request from an event loop (`submit(..., loop=loop)`) gets an asyncio future, and the answers of a
whole batch reach that loop in ONE `call_soon_threadsafe` (one wake-up of the loop per batch, not one
per request and no concurrent-future chaining): at 32 clients that hand-off was a visible share of a
batched request's time.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import Future
from typing import Callable

import numpy as np

from cnnapp.serving.codec import ServingError
from cnnapp.serving.work import settle

log = logging.getLogger(__name__)


class _Task:
    __slots__ = ("inputs", "size", "future", "loop")

    def __init__(self, inputs, size, loop=None):
        self.inputs, self.size, self.loop = inputs, size, loop
        self.future = loop.create_future() if loop is not None else Future()


class _Batch:
    __slots__ = ("key", "tasks", "size", "deadline")

    def __init__(self, key, deadline):
        self.key, self.tasks, self.size, self.deadline = key, [], 0, deadline


class Batcher:
    """>>> fut = batcher.submit("serving_default", {"sentences": arr}); fut.result()["scores"]"""

    def __init__(self, call: Callable[[str, dict], dict], params, *, name: str = "",
                 on_batch: Callable[[int], None] | None = None):
        self.call, self.params, self.name, self.on_batch = call, params, name, on_batch
        self._cond = threading.Condition()
        self._open: dict = {}                       # key -> _Batch still accepting tasks
        self._ready: collections.deque = collections.deque()
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(params.num_batch_threads)]
        for t in self._threads:
            t.start()

    def submit(self, signature: str, inputs: dict[str, np.ndarray], loop=None):
        """Queue one request: a concurrent Future, or with `loop` an asyncio future of that loop;
        None once closed (the caller then runs it directly)."""
        size = next(iter(inputs.values())).shape[0]
        key = (signature, tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(inputs.items())))
        task = _Task(inputs, size, loop)
        p = self.params
        with self._cond:
            if self._closed:
                return None
            batch = self._open.get(key)
            if batch is not None and batch.size + size > p.max_batch_size:
                self._ready.append(self._open.pop(key))
                batch = None
            if batch is None:
                if len(self._ready) + len(self._open) >= p.max_enqueued_batches:
                    raise ServingError(f"The batch scheduling queue is full ({p.max_enqueued_batches} batches "
                                       f"waiting); try again later", status=503)
                batch = self._open[key] = _Batch(key, time.monotonic() + p.batch_timeout_micros / 1e6)
            batch.tasks.append(task)
            batch.size += size
            if batch.size >= p.max_batch_size:
                self._ready.append(self._open.pop(key))
            self._cond.notify()
        return task.future

    def close(self) -> None:
        """Stop taking requests; the threads finish every queued batch, then exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _next_batch(self) -> _Batch | None:
        with self._cond:
            while True:
                if self._ready:
                    return self._ready.popleft()
                now = time.monotonic()
                if self._open:
                    key, batch = min(self._open.items(), key=lambda kv: kv[1].deadline)
                    # Closed: nothing more will join, so waiting out the timeout only adds latency.
                    if batch.deadline <= now or self._closed:
                        return self._open.pop(key)
                    self._cond.wait(batch.deadline - now)
                elif self._closed:
                    return None
                else:
                    self._cond.wait()

    def _worker(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._run(batch)

    def _run(self, batch: _Batch) -> None:
        tasks = batch.tasks
        signature = batch.key[0]
        if self.on_batch:
            self.on_batch(batch.size)
        outcomes = []
        try:
            if len(tasks) == 1:
                merged = tasks[0].inputs
            else:
                merged = {n: np.concatenate([t.inputs[n] for t in tasks]) for n in tasks[0].inputs}
            outputs = self.call(signature, merged)
        except ServingError as e:
            if len(tasks) == 1:
                outcomes = [(tasks[0], None, e)]
            else:
                outcomes = [self._run_alone(signature, t) for t in tasks]   # find the bad one(s); answer the rest
        except BaseException as e:  # noqa: BLE001 - a failed call must reach its waiters, not kill the thread
            outcomes = [(t, None, e) for t in tasks]
        else:
            offset = 0
            for t in tasks:
                outcomes.append((t, {n: v[offset:offset + t.size] for n, v in outputs.items()}, None))
                offset += t.size
        by_loop: dict = {}
        for task, result, error in outcomes:
            if task.loop is None:
                if error is not None:
                    task.future.set_exception(error)
                else:
                    task.future.set_result(result)
            else:
                by_loop.setdefault(task.loop, []).append((task.future, result, error))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(settle, items)
            except RuntimeError:        # that loop has closed: nobody is waiting any more
                pass

    def _run_alone(self, signature, task):
        try:
            return task, self.call(signature, task.inputs), None
        except BaseException as e:  # noqa: BLE001
            return task, None, e
