"""The TF-Serving-compatible REST app: a starlette object that tests call in-process.

Routes (tensorflow/serving g3doc/api/api_rest.md), each also under /versions/{v} and /labels/{l}:
    GET  /v1/models/{name}               version status
    GET  /v1/models/{name}/metadata      signature defs
    POST /v1/models/{name}:predict       {"instances": [...]} or {"inputs": ...}
    POST /v1/models/{name}:classify      {"examples": [{feature: value}]}
    GET  /monitoring/prometheus/metrics  Prometheus text
Every error is `{"error": "<message>"}` with a 4xx/5xx status.

>>> app = create_app(ServerConfig(models=discover_models(Path("saved_models"))))
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cnnapp.serving.codec import (ServingError, decode_classify, decode_predict, encode_classify,
                                  encode_predict, parse_json)
from cnnapp.serving.config import ServerConfig
from cnnapp.serving.explain import explain  # cnnapp's :explain extension
from cnnapp.serving.page import page_routes  # the web page at /
from cnnapp.serving.metrics import Metrics
from cnnapp.serving.models import ModelManager

log = logging.getLogger(__name__)

# name, then optional /versions/N or /labels/L, then /metadata or :verb. Anything else is malformed.
_PATH = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?$")


def _json(body: dict, status: int = 200) -> Response:
    # allow_nan: TF Serving writes NaN scores as NaN, and clients for it accept that.
    return Response(json.dumps(body, separators=(",", ":")), status_code=status, media_type="application/json")


def error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


class ServingApp:
    """Holds the model manager and metrics; `.app` is the ASGI app to mount or run."""

    def __init__(self, config: ServerConfig, *, load: bool = True):
        self.config = config
        self.metrics = Metrics()
        self.manager = ModelManager(config, metrics=self.metrics)
        if load:
            self.manager.poll()

        @asynccontextmanager
        async def lifespan(app):
            self.manager.start_polling()
            try:
                yield
            finally:
                await run_in_threadpool(self.manager.stop)

        self.app = Starlette(routes=[
            Route("/v1/models/{rest:path}", self.models_route, methods=["GET", "POST"]),
            Route("/monitoring/prometheus/metrics", self.prometheus, methods=["GET"]),
            *page_routes(self),  # the page, its files and /cnnapp/models (serving/page.py)
        ], lifespan=lifespan, exception_handlers={404: self.not_found, 405: self.not_allowed})
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

    async def _body(self, request: Request) -> bytes:
        limit = self.config.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ServingError(f"request body is {int(declared)} bytes, over the limit of {limit} "
                               f"(--max-body)", status=413)
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:    # a missing or false Content-Length does not get past the limit
                raise ServingError(f"request body exceeds the limit of {limit} bytes (--max-body)", status=413)
            chunks.append(chunk)
        return b"".join(chunks)

    async def models_route(self, request: Request) -> Response:
        started = time.perf_counter()
        m = _PATH.match(request.path_params["rest"])
        name = m["name"] if m else "?"
        api = "unknown"
        try:
            if not m:
                raise ServingError(f"Malformed request: {request.method} {request.url.path}", status=404)
            version, label, verb = m["version"], m["label"], m["verb"]
            if m["metadata"] and verb:
                raise ServingError(f"Malformed request: {request.method} {request.url.path}", status=404)
            if request.method == "POST" and verb == "explain":  # cnnapp's extension (serving/explain.py)
                api = "Explain"
                response = _json(await explain(self, name, version, label, await self._body(request)))
            elif request.method == "GET":
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
                if verb not in ("predict", "classify", "regress"):
                    raise ServingError(f"Malformed request: POST {request.url.path} (expected :predict, "
                                       f":classify or :regress)", status=404 if verb else 405)
                api = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}[verb]
                body = await self._body(request)
                response = await self.run(verb, name, version, label, body)
        except ServingError as e:
            response = error(str(e), e.status)
        except Exception as e:  # noqa: BLE001 - a bug answers 500 in TF Serving's shape and is logged
            log.exception("internal error on %s %s", request.method, request.url.path)
            response = error(f"Internal error: {type(e).__name__}: {str(e)[:200]}", 500)
        self.metrics.request(name if m else "", api, response.status_code,
                             (time.perf_counter() - started) * 1e6)
        return response

    def metadata(self, name, version, label) -> Response:
        servable = self.manager.resolve(name, version, label)
        return _json({"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                      "metadata": servable.metadata()})

    async def run(self, verb, name, version, label, body: bytes) -> Response:
        servable = self.manager.resolve(name, version, label)
        doc = parse_json(body)
        sig = doc.get("signature_name")
        if sig is not None and not isinstance(sig, str):
            raise ServingError(f"'signature_name' must be a string. Received: {json.dumps(sig)[:80]}")
        sig, specs = servable.signature(sig)
        if verb == "regress":
            raise ServingError(f"Expected regression signature method_name to be tensorflow/serving/regress; "
                               f"cnnapp models are classifiers (signature {sig!r}): use :predict or :classify")
        if verb == "classify":
            inputs, form = decode_classify(doc, specs), "classify"
        else:
            inputs, form = decode_predict(doc, specs)
        outputs = await self.call(servable, sig, inputs)
        return _json(encode_classify(outputs) if verb == "classify" else encode_predict(outputs, form))

    async def call(self, servable, sig, inputs):
        batcher = servable.batcher
        batchable = batcher is not None and inputs and all(a.ndim for a in inputs.values())
        if batchable:
            future = batcher.submit(sig, inputs)
            if future is not None:
                return await asyncio.wrap_future(future)
        # Batching off, or this version was just switched out: call it directly, off the event loop.
        return await run_in_threadpool(servable.call, sig, inputs)


def create_app(config: ServerConfig, *, load: bool = True) -> ServingApp:
    return ServingApp(config, load=load)
