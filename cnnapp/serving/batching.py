"""Server-side batching with TF Serving's parameters: concurrent requests become one signature call.

Requests are queued per key (signature and the shapes past the batch dimension, so only tensors
that can be concatenated share a batch). A batch closes when it holds `max_batch_size` examples or
its oldest request has waited `batch_timeout_micros`; `num_batch_threads` threads run closed
batches; beyond `max_enqueued_batches` waiting batches a request is refused (503), as in TF Serving.
If a merged call fails on bad input (one undecodable image), each request is retried alone so one
bad request never fails the others.
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

log = logging.getLogger(__name__)


class _Task:
    __slots__ = ("inputs", "size", "future")

    def __init__(self, inputs, size):
        self.inputs, self.size, self.future = inputs, size, Future()


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

    def submit(self, signature: str, inputs: dict[str, np.ndarray]) -> Future | None:
        """Queue one request; None once closed (the caller then runs it directly)."""
        size = next(iter(inputs.values())).shape[0]
        key = (signature, tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(inputs.items())))
        task = _Task(inputs, size)
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
        try:
            if len(tasks) == 1:
                merged = tasks[0].inputs
            else:
                merged = {n: np.concatenate([t.inputs[n] for t in tasks]) for n in tasks[0].inputs}
            outputs = self.call(signature, merged)
        except ServingError as e:
            if len(tasks) == 1:
                tasks[0].future.set_exception(e)
                return
            for t in tasks:     # find the bad request(s); answer the rest
                self._run_alone(signature, t)
            return
        except BaseException as e:  # noqa: BLE001 - a failed call must reach its waiters, not kill the thread
            for t in tasks:
                t.future.set_exception(e)
            return
        offset = 0
        for t in tasks:
            try:
                t.future.set_result({n: v[offset:offset + t.size] for n, v in outputs.items()})
            except Exception as e:  # noqa: BLE001
                t.future.set_exception(e)
            offset += t.size

    def _run_alone(self, signature, task):
        try:
            task.future.set_result(self.call(signature, task.inputs))
        except BaseException as e:  # noqa: BLE001
            task.future.set_exception(e)
