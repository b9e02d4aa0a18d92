"""The serving service: what a request can ask of the served models, whatever protocol it came by.

`ServingService(config)` owns the model manager, the metrics, the worker threads, the heavy-request
slots and the work counters, and offers: `resolve`, `status` / `version_states`, `metadata`,
`infer` (batched or chunked in a worker, under the request's deadline), `run_work` (any blocking
step, cancellable), `parse` (a JSON body, in a worker or a batch thread), `classify_signature` /
`classifications`, `regress_signature` / `regressions` / `refuse_regress` and `record` (metrics).
REST (serving/app.py), gRPC (serving/grpc_server.py), the page and `:explain` take the service; none
reaches into another. A new transport (say KServe's v2 REST) is one module that decodes its requests,
calls these, and encodes the answers.

>>> service = ServingService(config); servable = service.resolve("digits", None, None)
>>> outputs = await service.infer(servable, "serving_default", inputs, Work.within(30))
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnapp.serving.codec import classifications, decode_body, parse_json, regressions
from cnnapp.serving.config import ServerConfig
from cnnapp.serving.errors import DeadlineExceeded, ServingError
from cnnapp.serving.manager import ModelManager
from cnnapp.serving.metrics import UNKNOWN_MODEL, Metrics
from cnnapp.serving.servable import Servable
from cnnapp.serving.work import Slots, Work, WorkStats, pause_gc, resume_gc

# Bodies larger than this are parsed by serving/json_parse.py (sharing the GIL), and are heavy:
# they take one of HEAVY_CONCURRENCY slots (each may take ~10x its size in Python objects while
# decoding). Smaller ones take microseconds to parse.
INLINE_BODY_BYTES = 16 * 1024
HEAVY_CONCURRENCY = 2
REGRESS_METHOD = "tensorflow/serving/regress"     # TF Serving's kRegressMethodName
CLASSIFY_METHOD = "tensorflow/serving/classify"   # TF Serving's kClassifyMethodName


def _retrieve(future) -> None:
    """An answer nobody waits for any more (its request timed out) is not an error to log."""
    if not future.cancelled():
        future.exception()


class ServingService:
    def __init__(self, config: ServerConfig, *, load: bool = True):
        self.config = config
        self.metrics = Metrics()
        self.manager = ModelManager(config, metrics=self.metrics)
        # Own pool (not anyio's): a timed-out request stops waiting at once; its thread stops at the
        # next chunk boundary.
        self.executor = ThreadPoolExecutor(max_workers=config.rest_api_num_threads, thread_name_prefix="serve")
        # Heavy requests (large bodies, :explain) at once, REST and gRPC together; a slot is freed by
        # the worker when it really stops (serving/work.py).
        self.slots = Slots(HEAVY_CONCURRENCY)
        self.work = WorkStats()
        if load:
            self.manager.poll()

    # ------------------------------------------------------------------ models
    def knows(self, name: str) -> bool:
        return self.manager.knows(name)

    def resolve(self, name: str, version: str | int | None, label: str | None) -> Servable:
        return self.manager.resolve(name, version, label)

    def status(self, name: str, version: str | int | None = None, label: str | None = None) -> dict:
        return self.manager.status(name, version, label)

    def version_states(self, name: str, version=None, label=None):
        return self.manager.version_states(name, version, label)

    def metadata(self, name: str, version, label) -> tuple[Servable, dict]:
        """(the servable, TF Serving's REST `metadata`: its SignatureDefMap as a dict)."""
        servable = self.resolve(name, version, label)
        return servable, servable.metadata()

    def model_names(self) -> list[str]:
        return self.manager.model_names()

    def record(self, name: str, api: str, status, micros: float, entrypoint: str = "REST") -> None:
        """One request in the metrics (an unknown model name counted under one label, not its own)."""
        self.metrics.request(name if self.manager.knows(name) else UNKNOWN_MODEL, api, status, micros,
                             entrypoint=entrypoint)

    # ------------------------------------------------------------------ work
    def parse(self, body: bytes) -> dict:
        """A request body -> its JSON object. Blocking: call it in a worker (run_work), never on the loop."""
        text = decode_body(body)
        self.work.add("parsing")
        try:
            return parse_json(text, share_gil=len(body) > INLINE_BODY_BYTES)
        finally:
            self.work.add("parsing", -1)

    async def run_work(self, fn, *, work: Work, heavy: bool = False):
        """`fn(work)` in a worker thread. A heavy one first takes a slot, which the worker frees
        when it stops. If the caller stops waiting (timeout, client gone), `work` is cancelled and
        the worker stops at its next check instead of running to its end."""
        loop = asyncio.get_running_loop()
        if heavy:
            await self.slots.acquire()
        self.work.add("running")
        try:
            future = loop.run_in_executor(self.executor, self._worker, fn, work, heavy)
        except BaseException:
            self._worker_done(heavy)
            raise
        future.add_done_callback(_retrieve)
        try:
            return await asyncio.shield(future)
        except BaseException:
            work.cancel("the request timed out or its client left")
            raise

    def _worker(self, fn, work: Work, heavy: bool):
        if heavy:
            pause_gc()          # millions of short-lived lists: no full collections meanwhile (work.py)
        try:
            work.check()
            return fn(work)
        finally:
            if heavy:
                resume_gc()
            self._worker_done(heavy)

    def _worker_done(self, heavy: bool) -> None:
        self.work.add("running", -1)
        if heavy:
            self.slots.release()

    def batch_now(self, servable: Servable, inputs: dict[str, np.ndarray]) -> bool:
        """True when a request goes to the batcher whole (small enough for one batch)."""
        return servable.batchable(inputs) and next(a.shape[0] for a in inputs.values() if a.ndim) \
            <= servable.chunk_examples

    async def infer(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray], work: Work, *,
                    heavy: bool = False) -> dict[str, np.ndarray]:
        """Run a request's signature: through the batcher when it fits one batch, else a chunk at a
        time in a worker. Past `work`'s deadline: DeadlineExceeded, and the worker stops."""
        if self.batch_now(servable, inputs):
            future = servable.batcher.submit(signature, inputs, loop=asyncio.get_running_loop())
            if future is not None:
                remaining = work.remaining()
                try:
                    return await (asyncio.wait_for(future, remaining) if remaining is not None else future)
                except asyncio.TimeoutError:
                    raise DeadlineExceeded("Deadline exceeded while waiting for the batch") from None
        return await self.run_work(lambda w: self.infer_blocking(servable, signature, inputs, w),
                                   work=work, heavy=heavy)

    def infer_blocking(self, servable: Servable, signature: str, inputs: dict[str, np.ndarray],
                       work: Work) -> dict[str, np.ndarray]:
        """`infer` from a worker thread (the batcher's concurrent futures, chunk by chunk)."""
        return servable.infer(signature, inputs, work=work, stats=self.work)

    # ------------------------------------------------------------------ APIs
    # (scores, labels per row) for Classify, or ServingError without [batch, classes] 'scores'
    classifications = staticmethod(classifications)
    # one value per example for Regress, or ServingError without a [batch] or [batch, 1] 'outputs'
    regressions = staticmethod(regressions)

    @staticmethod
    def classify_signature(servable: Servable, signature_name: str | None) -> tuple[str, dict, bool]:
        """(signature, its input specs, whether it takes serialized tf.Examples) for Classify: TF
        Serving's classification signature (method_name tensorflow/serving/classify, one `inputs`)
        parses tf.Examples itself; any other takes the examples' features as its inputs."""
        sig, specs = servable.signature(signature_name)
        return sig, specs, servable.signature_defs[sig].method_name == CLASSIFY_METHOD and set(specs) == {"inputs"}

    @staticmethod
    def regress_signature(servable: Servable, signature_name: str | None) -> str:
        """The signature a REST :regress runs: one whose method_name is tensorflow/serving/regress
        (TF Serving's, taking serialized tf.Examples as `inputs`), else refused as below."""
        sig, specs = servable.signature(signature_name)
        if servable.signature_defs[sig].method_name != REGRESS_METHOD or set(specs) != {"inputs"}:
            ServingService.refuse_regress(servable, sig)
        return sig

    @staticmethod
    def refuse_regress(servable: Servable, signature_name: str | None) -> None:
        """Regress, as TF Serving answers it for a classification signature: always refused."""
        sig, _ = servable.signature(signature_name)
        raise ServingError(f"Expected regression signature method_name to be tensorflow/serving/regress; "
                           f"cnnapp models are classifiers (signature {sig!r}): use Predict / :predict or "
                           f"Classify / :classify")

    def close(self) -> None:
        self.manager.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)
