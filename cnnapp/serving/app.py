"""The TF-Serving-compatible REST app: a starlette object that tests call in-process.

Routes (tensorflow/serving g3doc/api/api_rest.md), each also under /versions/{v} and /labels/{l}:
    GET  /v1/models/{name}               version status
    GET  /v1/models/{name}/metadata      signature defs
    POST /v1/models/{name}:predict       {"instances": [...]} or {"inputs": ...}
    POST /v1/models/{name}:classify      {"examples": [{feature: value}]}
    GET  /v1/models                      the served models and their versions (cnnapp's extension)
    GET  /monitoring/prometheus/metrics  Prometheus text
Every error is `{"error": "<message>"}` with a 4xx/5xx status.

The event loop only reads bodies and routes: a small body (a few examples) is decoded inline, which
costs microseconds; a larger one is parsed, decoded, run and encoded in a worker thread (at most a
few at once), so a status GET is never stuck behind a 50 MB request. A request over
`max_instances_per_request` examples is refused before decoding, and what is accepted runs through
the model `chunk_examples` at a time. Requests past `request_timeout_ms` get 408.

>>> app = create_app(ServerConfig(models=discover_models(Path("saved_models"))))
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cnnapp.serving.codec import (ServingError, decode_classify, decode_predict, encode_classify,
                                  encode_predict, parse_json)
from cnnapp.serving.config import ServerConfig
from cnnapp.serving.metrics import UNKNOWN_MODEL, Metrics
from cnnapp.serving.models import DeadlineExceeded, ModelManager, Servable

log = logging.getLogger(__name__)

# name, then optional /versions/N or /labels/L, then /metadata or :verb. Anything else is malformed.
_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$")
# Bodies up to this size are decoded on the event loop (a few examples: tens of microseconds);
# larger ones go to a worker thread.
INLINE_BODY_BYTES = 16 * 1024
# Large bodies processed at once (each may take ~10x its size in Python objects while decoding).
HEAVY_CONCURRENCY = 2
_APIS = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}


def _json(body: dict, status: int = 200) -> Response:
    # allow_nan: TF Serving writes NaN scores as NaN, and clients for it accept that.
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


def error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


def decode_request(verb: str, servable: Servable, doc: dict, max_instances: int):
    """A parsed :predict/:classify/:regress body -> (signature name, numpy inputs, reply form)."""
    sig = doc.get("signature_name")
    if sig is not None and not isinstance(sig, str):
        raise ServingError(f"'signature_name' must be a string. Received: {json.dumps(sig)[:80]}")
    sig, specs = servable.signature(sig)
    if verb == "regress":
        raise ServingError(f"Expected regression signature method_name to be tensorflow/serving/regress; "
                           f"cnnapp models are classifiers (signature {sig!r}): use :predict or :classify")
    if verb == "classify":
        return sig, decode_classify(doc, specs, max_instances), "classify"
    inputs, form = decode_predict(doc, specs, max_instances)
    return sig, inputs, form


def encode_reply(outputs: dict, form: str) -> Response:
    return _json(encode_classify(outputs) if form == "classify" else encode_predict(outputs, form))


class ServingApp:
    """Holds the model manager and metrics; `.app` is the ASGI app to mount or run."""

    def __init__(self, config: ServerConfig, *, load: bool = True):
        self.config = config
        self.metrics = Metrics()
        self.manager = ModelManager(config, metrics=self.metrics)
        # Own pool (not anyio's): a timed-out request stops waiting at once; its thread stops at the
        # next chunk boundary.
        self.executor = ThreadPoolExecutor(max_workers=16, thread_name_prefix="rest")
        self._heavy: dict[int, asyncio.Semaphore] = {}      # per event loop (tests run several)
        if load:
            self.manager.poll()

        @asynccontextmanager
        async def lifespan(app):
            self.manager.start_polling()
            try:
                yield
            finally:
                await asyncio.get_running_loop().run_in_executor(None, self.manager.stop)

        self.app = Starlette(routes=[
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/", self.list_models, methods=["GET"]),
            Route("/v1/models/{rest:path}", self.models_route, methods=["GET", "POST"]),
            Route("/monitoring/prometheus/metrics", self.prometheus, methods=["GET"]),
        ], lifespan=lifespan, exception_handlers={404: self.not_found, 405: self.not_allowed})
        self.app.router.redirect_slashes = False
        self.app.state.serving = self

    async def __call__(self, scope, receive, send):
        await self.app(scope, receive, send)

    async def not_found(self, request: Request, exc) -> Response:
        return error(f"Malformed request: {request.method} {request.url.path} (no such route; see "
                     f"/v1/models/{{name}}[:predict|:classify|/metadata])", 404)

    async def not_allowed(self, request: Request, exc) -> Response:
        return error(f"Malformed request: {request.method} {request.url.path} (method not allowed)", 405)

    async def prometheus(self, request: Request) -> Response:
        return PlainTextResponse(self.metrics.render(), media_type="text/plain; version=0.0.4")

    async def list_models(self, request: Request) -> Response:
        models = []
        for name in self.manager.model_names():
            try:
                models.append({"name": name, **self.manager.status(name)})
            except ServingError:
                models.append({"name": name, "model_version_status": []})
        return _json({"models": models})

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ServingError(f"request body is {int(declared)} bytes, over the limit of {limit} "
                               f"(--max_body)", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:    # a missing or false Content-Length does not get past the limit
                raise ServingError(f"request body exceeds the limit of {limit} bytes (--max_body)", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def models_route(self, request: Request) -> Response:
        started = time.perf_counter()
        m = _PATH.match(request.path_params["rest"])
        name = m["name"] if m else ""
        api = "unknown"
        status_label = None
        try:
            if not m:
                raise ServingError(f"Malformed request: {request.method} {request.url.path}", status=404)
            version, label, verb = m["version"], m["label"], m["verb"]
            if m["metadata"] and verb:
                raise ServingError(f"Malformed request: {request.method} {request.url.path}", status=404)
            if request.method == "GET":
                if verb:
                    raise ServingError(f"Malformed request: GET {request.url.path} (:{verb} takes POST)",
                                       status=405)
                if m["metadata"]:
                    api = "GetModelMetadata"
                    response = self.metadata(name, version, label)
                else:
                    api = "GetModelStatus"
                    response = _json(self.manager.status(name, version, label))
            else:
                if verb not in _APIS:
                    raise ServingError(f"Malformed request: POST {request.url.path} (expected :predict, "
                                       f":classify or :regress)", status=404 if verb else 405)
                api = _APIS[verb]
                servable = self.manager.resolve(name, version, label)
                body = await self._body(request)
                timeout = self.config.request_timeout_ms / 1000 if self.config.request_timeout_ms > 0 else None
                deadline = None if timeout is None else time.monotonic() + timeout
                try:
                    response = await asyncio.wait_for(self.run(verb, servable, body, deadline), timeout)
                except asyncio.TimeoutError:
                    raise DeadlineExceeded(f"Deadline exceeded: no answer within {self.config.request_timeout_ms} ms "
                                           f"(--rest_api_timeout_in_ms)") from None
        except ServingError as e:
            response = error(str(e), e.status)
        except ClientDisconnect:
            # The client went away mid-upload: nobody to answer, nothing went wrong here.
            log.info("client disconnected during %s %s", request.method, request.url.path)
            response, status_label = error("client disconnected", 400), 499
        except Exception as e:  # noqa: BLE001 - a bug answers 500 in TF Serving's shape and is logged
            log.exception("internal error on %s %s", request.method, request.url.path)
            response = error(f"Internal error: {type(e).__name__}: {str(e)[:200]}", 500)
        self.metrics.request(name if self.manager.knows(name) else UNKNOWN_MODEL, api,
                             status_label or response.status_code, (time.perf_counter() - started) * 1e6)
        return response

    def metadata(self, name, version, label) -> Response:
        servable = self.manager.resolve(name, version, label)
        return _json({"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                      "metadata": servable.metadata()})

    async def run(self, verb: str, servable: Servable, body: bytes, deadline: float | None) -> Response:
        loop = asyncio.get_running_loop()
        limit = self.config.max_instances_per_request
        if len(body) <= INLINE_BODY_BYTES:
            sig, inputs, form = decode_request(verb, servable, parse_json(body), limit)
            if servable.batchable(inputs) and len(next(iter(inputs.values()))) <= servable.chunk_examples:
                future = servable.batcher.submit(sig, inputs)
                if future is not None:
                    return encode_reply(await asyncio.wrap_future(future), form)
            outputs = await loop.run_in_executor(self.executor, lambda: servable.infer(sig, inputs, deadline=deadline))
            return encode_reply(outputs, form)
        heavy = self._heavy.setdefault(id(loop), asyncio.Semaphore(HEAVY_CONCURRENCY))
        async with heavy:
            return await loop.run_in_executor(self.executor, self._run_blocking, verb, servable, body, limit, deadline)

    @staticmethod
    def _run_blocking(verb, servable, body, limit, deadline) -> Response:
        sig, inputs, form = decode_request(verb, servable, parse_json(body, share_gil=True), limit)
        return encode_reply(servable.infer(sig, inputs, deadline=deadline), form)

    def close(self) -> None:
        self.manager.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)


def create_app(config: ServerConfig, *, load: bool = True) -> ServingApp:
    return ServingApp(config, load=load)
