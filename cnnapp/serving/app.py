"""The TF-Serving-compatible REST app: a starlette object that tests call in-process, a thin
transport over serving/service.py (models, metrics, workers and limits live there).

Routes (tensorflow/serving g3doc/api/api_rest.md), each also under /versions/{v} and /labels/{l}:
    GET  /v1/models/{name}               version status
    GET  /v1/models/{name}/metadata      signature defs
    POST /v1/models/{name}:predict       {"instances": [...]} or {"inputs": ...}
    POST /v1/models/{name}:classify      {"examples": [{feature: value}]}: features are the signature's
                                         inputs, or serialized tf.Examples for a tensorflow/serving/classify one
    POST /v1/models/{name}:regress       {"examples": [...]} on a tensorflow/serving/regress signature
                                         (serialized tf.Examples in, `outputs` -> {"results": [...]})
    GET  /v1/models                      the served models and their versions (cnnapp's extension)
    GET  /monitoring/prometheus/metrics  Prometheus text (ServerConfig.prometheus_path; None: off)
With `enable_cors_support` (--rest_api_enable_cors_support) every answer carries TF Serving's CORS
headers and an OPTIONS preflight is answered 200 when it has an http(s) Origin, else 400.
Every error is `{"error": "<message>"}` with a 4xx/5xx status, as TF Serving answers it: a path
under /v1/ that is none of the above (`/versions/abc`, `:foo`, GET `:predict`) is 400
`Malformed request: <METHOD> <path>`, a request past `--rest_api_timeout_in_ms` is 504.
Before any of that, serving/guard.py refuses requests for another Host (DNS rebinding), cross-origin
browser POSTs and non-JSON browser bodies; every answer carries `X-Content-Type-Options: nosniff`.

The event loop only reads bodies and routes: every body is parsed, decoded, run and encoded in a
worker thread (`run_work`; with batching, a small body is parsed by the batch thread just before it
forms its next batch), so a status GET is never stuck behind a 50 MB request. A large body
(or an :explain) first takes one of `HEAVY_CONCURRENCY` heavy-request slots (serving/work.py). A
request over `max_instances_per_request` examples is refused before decoding, and what is accepted
runs through the model a chunk at a time (`chunk_examples`, and encoded images by decoded size).
Requests past `request_timeout_ms` get 504 and their work is cancelled: the worker stops before its
next chunk and only then frees its slot. A body that has not fully arrived `read_timeout_s` after
the request head gets 408.

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
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from cnnapp.serving.codec import (ServingError, decode_classify, decode_examples, decode_predict, encode_classify,
                                  encode_predict, encode_regress)
from cnnapp.serving.batching import UNBATCHED
from cnnapp.serving.config import ServerConfig
from cnnapp.serving.errors import DeadlineExceeded
from cnnapp.serving.explain import explain  # cnnapp's :explain extension
from cnnapp.serving.guard import RequestGuard
from cnnapp.serving.page import page_routes  # the web page at /
from cnnapp.serving.servable import Servable
from cnnapp.serving.service import HEAVY_CONCURRENCY, INLINE_BODY_BYTES, ServingService  # noqa: F401
from cnnapp.serving.work import Work

log = logging.getLogger(__name__)

# TF Serving's patterns (model_servers/http_rest_api_util.cc): a name, then /versions/<ASCII digits>
# or /labels/<label>, then /metadata or :verb; matched whole (fullmatch: `$` would let "1\n" by).
# Anything else is "Malformed request".
_PATH = re.compile(r"(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)|/labels/(?P<label>[^/:]+))?"
                   r"(?:(?P<metadata>/metadata)|:(?P<verb>[A-Za-z]+))?/?")
_INT64_MAX = 2 ** 63 - 1
_APIS = {"predict": "Predict", "classify": "Classify", "regress": "Regress"}
_JSON_HEADERS = [(b"content-type", b"application/json"), (b"x-content-type-options", b"nosniff")]
_NOSNIFF = (b"x-content-type-options", b"nosniff")
# TF Serving's (model_servers/http_rest_api_util.cc AddCORSHeaders), with --rest_api_enable_cors_support.
_CORS_HEADERS = [(b"access-control-allow-origin", b"*"), (b"access-control-allow-methods", b"POST, GET"),
                 (b"access-control-allow-headers", b"Content-Type")]
_HTTP_ORIGIN = re.compile(r"https?://")


def _dumps(body: dict) -> bytes:
    # allow_nan: TF Serving writes NaN scores as NaN, and clients for it accept that.
    return json.dumps(body, separators=(",", ":")).encode()


def _json(body: dict, status: int = 200) -> Response:
    return Response(_dumps(body), status_code=status, media_type="application/json")


def error(message: str, status: int) -> Response:
    return _json({"error": message}, status)


def decode_request(verb: str, servable: Servable, doc: dict, max_instances: int):
    """A parsed :predict/:classify/:regress body -> (signature name, numpy inputs, reply form)."""
    sig = doc.get("signature_name")
    if sig is not None and not isinstance(sig, str):
        raise ServingError(f"'signature_name' must be a string. Received: {json.dumps(sig)[:80]}")
    if verb == "regress":
        sig = ServingService.regress_signature(servable, sig)
        return sig, {"inputs": decode_examples(doc, max_instances)}, "regress"
    if verb == "classify":
        sig, specs, serialized = ServingService.classify_signature(servable, sig)
        if serialized:      # TF Serving's classification signature: serialized tf.Examples in
            return sig, {"inputs": decode_examples(doc, max_instances)}, "classify"
        return sig, decode_classify(doc, specs, max_instances), "classify"
    sig, specs = servable.signature(sig)
    inputs, form = decode_predict(doc, specs, max_instances)
    return sig, inputs, form


def encode_reply(outputs: dict, form: str) -> bytes:
    if form == "regress":
        return _dumps(encode_regress(outputs))
    return _dumps(encode_classify(outputs) if form == "classify" else encode_predict(outputs, form))


def _with_cors(send):
    async def send_cors(message):
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message["headers"], *_CORS_HEADERS]}
        await send(message)
    return send_cors


class ServingApp:
    """TF Serving's REST API over a ServingService; `.app` is the ASGI app to mount or run."""

    def __init__(self, config: ServerConfig, *, load: bool = True, service: ServingService | None = None):
        self.service = service if service is not None else ServingService(config, load=load)
        self.guard = RequestGuard(config.allowed_hosts, allow_cross_origin=config.enable_cors_support)

        @asynccontextmanager
        async def lifespan(app):
            self.service.manager.start_polling()
            try:
                yield
            finally:
                await asyncio.get_running_loop().run_in_executor(None, self.service.manager.stop)

        # /v1/models/{name}... (every status, metadata and inference request) is answered by raw
        # ASGI below: starlette's Request/Response objects and middleware layers were a third of
        # the GIL time of a batched request. Starlette serves the rest (listing, metrics, errors,
        # lifespan).
        self.starlette = Starlette(routes=[
            Route("/v1/models", self.list_models, methods=["GET"]),
            Route("/v1/models/", self.list_models, methods=["GET"]),
            *([Route(config.prometheus_path, self.prometheus, methods=["GET"])] if config.prometheus_path else []),
            *page_routes(self.service),  # the page, its files and /cnnapp/models (serving/page.py)
        ], lifespan=lifespan, exception_handlers={404: self.not_found, 405: self.not_allowed})
        self.starlette.router.redirect_slashes = False
        self.starlette.state.serving = self
        self.app = self.asgi        # what uvicorn and tests run

    # What the service owns, under the names callers used before it existed (the page, tests).
    config = property(lambda self: self.service.config,
                      lambda self, value: setattr(self.service, "config", value))
    manager = property(lambda self: self.service.manager)
    metrics = property(lambda self: self.service.metrics)
    executor = property(lambda self: self.service.executor)
    slots = property(lambda self: self.service.slots)
    work = property(lambda self: self.service.work)

    async def __call__(self, scope, receive, send):
        await self.asgi(scope, receive, send)

    async def asgi(self, scope, receive, send):
        if scope["type"] != "http":
            await self.starlette(scope, receive, send)      # lifespan
            return
        if self.config.enable_cors_support:
            send = _with_cors(send)
            if scope["method"] == "OPTIONS":       # a CORS preflight, answered as TF Serving does
                origin = dict(scope["headers"]).get(b"origin", b"").decode("latin-1")
                ok = _HTTP_ORIGIN.search(origin) is not None
                await self._send_json(send, 200 if ok else 400, b"" if ok else _dumps(
                    {"error": "Origin header is missing in CORS preflight"}), "OPTIONS")
                return
        path, method = scope.get("path", ""), scope["method"]
        refused = self.guard.refusal(method, scope["headers"])
        if refused is not None:
            log.info("refused %s %s: %s", method, path[:200], refused[1])
            await self._send_json(send, refused[0], _dumps({"error": refused[1]}), method)
            return
        if path.startswith("/v1/models/") and len(path) > len("/v1/models/"):
            status, payload = await self.handle_models(method, path[len("/v1/models/"):], path,
                                                       lambda: self._read_body(scope, receive))
            if status is None:
                return          # the client has gone: nothing to send
            await self._send_json(send, status, payload, method)
            return

        async def send_nosniff(message):
            if message["type"] == "http.response.start" and _NOSNIFF[0] not in (k for k, _ in message["headers"]):
                message = {**message, "headers": [*message["headers"], _NOSNIFF]}
            await send(message)
        await self.starlette(scope, receive, send_nosniff)

    @staticmethod
    async def _send_json(send, status: int, payload: bytes, method: str) -> None:
        headers = [*_JSON_HEADERS, (b"content-length", b"%d" % len(payload))]
        if status == 408:           # a client too slow to send its body: not worth keeping
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload if method != "HEAD" else b""})

    async def not_found(self, request: Request, exc) -> Response:
        if request.url.path.startswith("/v1/"):     # TF Serving answers every /v1/ path itself: 400
            return error(f"Malformed request: {request.method} {request.url.path}", 400)
        return error(f"Malformed request: {request.method} {request.url.path} (no such route; see "
                     f"/v1/models/{{name}}[:predict|:classify|/metadata])", 404)

    async def not_allowed(self, request: Request, exc) -> Response:
        if request.url.path.startswith("/v1/"):
            return error(f"Malformed request: {request.method} {request.url.path}", 400)
        return error(f"Malformed request: {request.method} {request.url.path} (method not allowed)", 405)

    async def prometheus(self, request: Request) -> Response:
        return PlainTextResponse(self.service.metrics.render(), media_type="text/plain; version=0.0.4")

    async def list_models(self, request: Request) -> Response:
        models = []
        for name in self.service.model_names():
            try:
                models.append({"name": name, **self.service.status(name)})
            except ServingError:
                models.append({"name": name, "model_version_status": []})
        return _json({"models": models})

    async def _read_body(self, scope, receive) -> bytes:
        """The whole body, or ServingError: 413 past --max_body, 408 when it has not arrived within
        `read_timeout_s` (a client trickling bytes must not hold a connection and its buffers)."""
        seconds = self.config.read_timeout_s
        try:
            return await _with_timeout(self._receive_body(scope, receive), seconds if seconds > 0 else None)
        except asyncio.TimeoutError:
            raise ServingError(f"the request body did not arrive within {seconds:g} s "
                               f"(--rest_api_read_timeout_in_ms)", status=408) from None

    async def _receive_body(self, scope, receive) -> bytes:
        limit = self.config.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise ServingError(f"request body is {int(value)} bytes, over the limit of {limit} "
                                   f"(--max_body)", status=413)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:    # a missing or false Content-Length does not get past the limit
                raise ServingError(f"request body exceeds the limit of {limit} bytes (--max_body)", status=413)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def handle_models(self, method: str, rest: str, url_path: str, read_body) -> tuple[int | None, bytes]:
        """One /v1/models/{rest} request -> (HTTP status, JSON bytes); status None when the client left."""
        started = time.perf_counter()
        m = _PATH.fullmatch(rest)
        name = m["name"] if m else ""
        api = "unknown"
        status_label = None
        try:
            # TF Serving's exact answer to a path or method it has no route for (the same text).
            malformed = ServingError(f"Malformed request: {method} {url_path}", status=400)
            if not m or (m["metadata"] and m["verb"]):
                raise malformed
            version, label, verb = m["version"], m["label"], m["verb"]
            if method == "GET" and verb or method == "POST" and verb not in (*_APIS, "explain") \
                    or method not in ("GET", "POST"):
                raise malformed
            if version is not None:
                if int(version) > _INT64_MAX:
                    raise ServingError(f"Failed to convert version: {version} to numeric.")
                version = int(version)
            if method == "GET":
                if m["metadata"]:
                    api = "GetModelMetadata"
                    status, payload = 200, self.metadata(name, version, label)
                else:
                    api = "GetModelStatus"
                    status, payload = 200, _dumps(self.service.status(name, version, label))
            else:
                api = _APIS.get(verb, "Explain")
                servable = self.service.resolve(name, version, label)
                body = await read_body()
                timeout = self.config.request_timeout_ms / 1000 if self.config.request_timeout_ms > 0 else None
                work = Work.within(timeout)
                # :explain is cnnapp's extension (serving/explain.py), under the same limits and timeout.
                job = (explain(self.service, servable, body, work, _dumps) if verb == "explain"
                       else self.run(verb, servable, body, work))
                try:
                    status, payload = 200, await _with_timeout(job, timeout)
                except asyncio.TimeoutError:
                    work.cancel("timed out")
                    raise DeadlineExceeded(f"Deadline exceeded: no answer within {self.config.request_timeout_ms} ms "
                                           f"(--rest_api_timeout_in_ms)") from None
        except ServingError as e:
            status, payload = e.status, _dumps({"error": str(e)})
        except ClientDisconnect:
            # The client went away mid-upload: nobody to answer, nothing went wrong here.
            log.info("client disconnected during %s %s", method, url_path)
            status, payload, status_label = None, b"", 499
        except Exception as e:  # noqa: BLE001 - a bug answers 500 in TF Serving's shape and is logged
            log.exception("internal error on %s %s", method, url_path)
            status, payload = 500, _dumps({"error": f"Internal error: {type(e).__name__}: {str(e)[:200]}"})
        self.service.record(name, api, status_label or status, (time.perf_counter() - started) * 1e6)
        return status, payload

    def metadata(self, name, version, label) -> bytes:
        servable, metadata = self.service.metadata(name, version, label)
        return _dumps({"model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
                       "metadata": metadata})

    async def run(self, verb: str, servable: Servable, body: bytes, work: Work) -> bytes:
        """One :predict/:classify/:regress body -> the answer's bytes, never parsed on the loop. A large
        body is parsed, decoded, run and encoded in a worker holding a heavy slot; without batching,
        a small one in a worker too. With batching, a small body is queued unparsed and the batch
        thread parses it just before forming its next batch (serving/batching.py submit_unparsed):
        one hand-off each way, and the loop is woken once per batch."""
        service, limit = self.service, self.config.max_instances_per_request

        def decode(w):
            return decode_request(verb, servable, service.parse(body), limit)

        def whole(w):
            sig, inputs, form = decode(w)
            return encode_reply(service.infer_blocking(servable, sig, inputs, w), form)

        if len(body) > INLINE_BODY_BYTES:
            return await service.run_work(whole, work=work, heavy=True)
        if servable.batcher is None:
            return await service.run_work(whole, work=work)
        decoded: dict = {}

        def prepare():      # in the batch thread, just before it forms its next batch
            work.check()
            sig, inputs, form = decode(work)
            decoded.update(sig=sig, inputs=inputs, form=form)
            return (sig, inputs) if service.batch_now(servable, inputs) else None

        # The deadline is handle_models' timeout around this coroutine: its cancellation cancels `queued`.
        queued = servable.batcher.submit_unparsed(prepare, asyncio.get_running_loop())
        outputs = UNBATCHED if queued is None else await queued
        if outputs is UNBATCHED:    # more examples than one batch (or the batcher closing): a chunk at a time
            if not decoded:
                return await service.run_work(whole, work=work)
            return await service.run_work(lambda w: encode_reply(service.infer_blocking(
                servable, decoded["sig"], decoded["inputs"], w), decoded["form"]), work=work)
        return encode_reply(outputs, decoded["form"])

    def close(self) -> None:
        self.service.close()


async def _with_timeout(coro, seconds: float | None):
    """`asyncio.timeout` where there is one (3.11+: no extra Task per request), else wait_for."""
    if seconds is None:
        return await coro
    if hasattr(asyncio, "timeout"):
        async with asyncio.timeout(seconds):
            return await coro
    return await asyncio.wait_for(coro, seconds)


def create_app(config: ServerConfig, *, load: bool = True) -> ServingApp:
    return ServingApp(config, load=load)
