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
batched request's time. A small REST body is queued unparsed (`submit_unparsed`): the batch thread
parses it just before forming its next batch, so it is parsed off the event loop with no thread of
its own in between (loop -> batch thread -> loop, one wake-up each way).
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


def settle(outcomes) -> None:
    """On the event loop: settle the asyncio futures of one batch (a timed-out one is already done)."""
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)


UNBATCHED = object()    # submit_unparsed: the request is more than one batch; the caller runs it


class _Task:
    __slots__ = ("inputs", "size", "future", "loop")

    def __init__(self, inputs, size, loop=None, future=None):
        self.inputs, self.size, self.loop = inputs, size, loop
        self.future = future if future is not None else loop.create_future() if loop is not None else Future()


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
        self._unparsed: collections.deque = collections.deque()     # submit_unparsed's bodies
        self._closed = False
        self._threads = [threading.Thread(target=self._worker, name=f"batch-{name}-{i}", daemon=True)
                         for i in range(params.num_batch_threads)]
        for t in self._threads:
            t.start()

    def submit(self, signature: str, inputs: dict[str, np.ndarray], loop=None):
        """Queue one request: a concurrent Future, or with `loop` an asyncio future of that loop;
        None once closed (the caller then runs it directly)."""
        task = _Task(inputs, next(iter(inputs.values())).shape[0], loop)
        with self._cond:
            if self._closed:
                return None
            self._enqueue(signature, task)
        return task.future

    def submit_unparsed(self, prepare: Callable[[], tuple[str, dict] | None], loop):
        """Queue a request whose body is not parsed yet: a batch thread runs `prepare()` -> (signature,
        inputs) before it forms its next batch, so a small REST body is parsed neither on the event
        loop nor in a thread of its own (one hand-off each way, as for `submit`). An asyncio future
        of `loop`: the outputs; `UNBATCHED` when `prepare` returned None (more than one batch: the
        caller runs it); or the error `prepare` raised. None once closed."""
        future = loop.create_future()
        with self._cond:
            if self._closed:
                return None
            self._unparsed.append((prepare, future, loop))
            self._cond.notify()
        return future

    def _enqueue(self, signature: str, task: _Task) -> None:
        """Put a task in its batch (under the lock); ServingError 503 when the queue is full."""
        p = self.params
        key = (signature, tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(task.inputs.items())))
        batch = self._open.get(key)
        if batch is not None and batch.size + task.size > p.max_batch_size:
            self._ready.append(self._open.pop(key))
            batch = None
        if batch is None:
            if len(self._ready) + len(self._open) >= p.max_enqueued_batches:
                raise ServingError(f"The batch scheduling queue is full ({p.max_enqueued_batches} batches "
                                   f"waiting); try again later", status=503)
            batch = self._open[key] = _Batch(key, time.monotonic() + p.batch_timeout_micros / 1e6)
        batch.tasks.append(task)
        batch.size += task.size
        if batch.size >= p.max_batch_size:
            self._ready.append(self._open.pop(key))
        self._cond.notify()

    def _prepare(self, jobs: list) -> None:
        """In a batch thread: parse queued bodies into tasks of the coming batches."""
        answered: dict = {}
        for prepare, future, loop in jobs:
            if future.done():           # its request timed out or its client left meanwhile
                continue
            try:
                prepared = prepare()
                if prepared is not None:
                    signature, inputs = prepared
                    task = _Task(inputs, next(iter(inputs.values())).shape[0], loop, future)
                    with self._cond:
                        self._enqueue(signature, task)
                    continue
                outcome = (future, UNBATCHED, None)
            except BaseException as e:  # noqa: BLE001 - that request's answer (a bad body, a full queue)
                outcome = (future, None, e)
            answered.setdefault(loop, []).append(outcome)
        for loop, items in answered.items():
            try:
                loop.call_soon_threadsafe(settle, items)
            except RuntimeError:        # that loop has closed: nobody is waiting any more
                pass

    def close(self) -> None:
        """Stop taking requests; the threads finish every queued batch, then exit."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _next_batch(self) -> _Batch | list | None:
        """The next batch to run, or a list of bodies to parse first (they may join it), or None at the end."""
        with self._cond:
            while True:
                if self._unparsed:
                    jobs = list(self._unparsed)
                    self._unparsed.clear()
                    return jobs
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
            if isinstance(batch, list):
                self._prepare(batch)
            else:
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
