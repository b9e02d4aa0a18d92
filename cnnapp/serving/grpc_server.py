"""TF Serving's gRPC API on grpcio, from tensorflow-serving-api's own protos (port 8500 by convention).

PredictionService: Predict, Classify (on the examples' features, or on serialized tf.Examples for a
tensorflow/serving/classify signature), Regress (a tensorflow/serving/regress signature; refused for
cnnapp's classifiers, as TF Serving refuses it), GetModelMetadata; ModelService: GetModelStatus.
Same models, versions, labels, batching, instance cap, chunking, deadlines and heavy-request slots as REST: both take the one ServingService
(serving/service.py) and only translate requests and answers. TF Serving's status codes:
NOT_FOUND for an unknown model/version/label, INVALID_ARGUMENT for a bad request, UNAVAILABLE when
the batch queue is full, DEADLINE_EXCEEDED past the client's deadline.

>>> server = start_grpc_server(service, "127.0.0.1", 8500); ...; server.stop(grace=2)

tensorflow-serving-api declares a dependency on full `tensorflow`, which would stack a second
TensorFlow on tensorflow-cpu: it is installed with `--no-deps` (see the Makefile).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time

from cnnapp.errors import CnnappError
from cnnapp.serving.codec import NotFound, ServingError, clip
from cnnapp.serving.metrics import UNKNOWN_MODEL
from cnnapp.serving.servable import Servable
from cnnapp.serving.proto_codec import (array_to_tensor_proto, declared_bytes, examples_to_inputs,
                                        serialized_examples, tensor_to_array)
from cnnapp.serving.work import Work

log = logging.getLogger(__name__)
INLINE_BYTES = 16 * 1024        # larger requests (message or declared tensors) are decoded in worker threads
MAX_DETAILS = 1000              # a status message past this is clipped (clients refuse metadata past 8 KB)

INSTALL_HINT = ("pip install --no-deps 'tensorflow-serving-api==2.21.0' (its own dependency on full tensorflow "
                "would stack a second TensorFlow on tensorflow-cpu), or pass --port 0 to serve REST only")


def check_available() -> None:
    """CnnappError (one line) when grpcio or tensorflow-serving-api is missing."""
    try:
        import grpc  # noqa: F401
        from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401
    except ImportError as e:
        raise CnnappError(f"--port: the gRPC API needs grpcio and tensorflow-serving-api ({e}); {INSTALL_HINT}. "
                          f"Received: missing module") from None


class _Servicer:
    """Both services' methods, as coroutines on the gRPC server's own event loop (grpc.aio): a
    request never holds a thread while it waits for its batch. Small requests are decoded and
    encoded inline; large ones (over 16 KB) and unbatched signature calls go to the app's worker
    threads, so the loop keeps answering."""

    def __init__(self, service, loop):
        import grpc
        from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                             predict_pb2, regression_pb2)
        self.grpc, self.service, self.loop = grpc, service, loop
        self.config = service.config
        self.pb = {"predict": predict_pb2, "classify": classification_pb2, "metadata": get_model_metadata_pb2,
                   "status": get_model_status_pb2, "regress": regression_pb2}
        self.codes = {404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
                      413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE,
                      504: grpc.StatusCode.DEADLINE_EXCEEDED}   # errors.DeadlineExceeded (REST: 504)

    # ------------------------------------------------------------------ plumbing
    async def _handle(self, api: str, request, context, fn):
        started = time.perf_counter()
        name = request.model_spec.name
        code = self.grpc.StatusCode.OK
        try:
            return await fn(request, context)
        except ServingError as e:
            code = self.codes.get(e.status, self.grpc.StatusCode.INVALID_ARGUMENT)
            await context.abort(code, clip(" ".join(str(e).split()), MAX_DETAILS))
        except (asyncio.CancelledError, self.grpc.aio.AbortError):
            code = self.grpc.StatusCode.CANCELLED
            raise
        except Exception as e:  # noqa: BLE001 - a bug answers INTERNAL and is logged, the server stays up
            code = self.grpc.StatusCode.INTERNAL
            log.exception("internal error in gRPC %s", api)
            await context.abort(code, f"Internal error: {type(e).__name__}: {str(e)[:200]}")
        finally:
            self.service.record(name, api, code.name, (time.perf_counter() - started) * 1e6, entrypoint="GRPC")

    async def _offload(self, big: bool, fn, *args):
        """`fn(*args)` inline for a small request, in a worker thread for a large one."""
        if not big:
            return fn(*args)
        return await self.loop.run_in_executor(self.service.executor, fn, *args)

    async def _infer(self, servable: Servable, sig: str, inputs: dict, context, big: bool) -> dict:
        # Past the deadline, or cancelled by the client, the worker stops at its next chunk; a large
        # request holds one of the heavy-request slots REST's large bodies take too.
        return await self.service.infer(servable, sig, inputs, Work.within(context.time_remaining()), heavy=big)

    def _servable(self, spec) -> Servable:
        choice = spec.WhichOneof("version_choice")
        version = spec.version.value if choice == "version" else None
        label = spec.version_label if choice == "version_label" else None
        if not spec.name:
            raise ServingError("Missing ModelSpec name")
        if not self.service.knows(spec.name):
            raise NotFound(f"Servable not found for request: Latest({clip(spec.name)})")
        return self.service.resolve(spec.name, version, label)

    def _fill_spec(self, out, servable: Servable, signature: str) -> None:
        out.name = servable.name
        out.version.value = servable.version
        out.signature_name = signature

    # ------------------------------------------------------------------ PredictionService
    async def Predict(self, request, context):
        return await self._handle("Predict", request, context, self._predict)

    async def _predict(self, request, context):
        # The declared shapes count too: one float_val may stand for a shape of millions of values.
        big = request.ByteSize() > INLINE_BYTES or declared_bytes(request.inputs) > INLINE_BYTES
        servable, sig, inputs = await self._offload(big, self._predict_inputs, request)
        outputs = await self._infer(servable, sig, inputs, context, big)
        return await self._offload(big or _examples(outputs) > 64, self._predict_response, request, servable, sig,
                                   outputs)

    def _predict_inputs(self, request):
        servable = self._servable(request.model_spec)
        sig, specs = servable.signature(request.model_spec.signature_name or None)
        if set(request.inputs) != set(specs):
            raise ServingError(f"input keys must be exactly the signature's inputs {list(specs)} (signature {sig!r}). "
                               f"Received: {clip([clip(k, 40) for k in sorted(request.inputs)[:10]], 200)}")
        config = self.config
        inputs = {n: tensor_to_array(request.inputs[n], specs[n], max_instances=config.max_instances_per_request,
                                     max_bytes=config.max_body_bytes,
                                     max_free_values=config.max_free_values_per_example)
                  for n in specs}
        sizes = {a.shape[0] for a in inputs.values() if a.ndim}
        if len(sizes) > 1:
            raise ServingError(f"inputs disagree on the batch size (first dimension). Received sizes: {sorted(sizes)}")
        unknown = [k for k in request.output_filter if k not in servable.signature_defs[sig].outputs]
        if unknown:
            raise ServingError(f"output_filter names {clip([clip(k, 40) for k in unknown[:10]], 200)}, not outputs "
                               f"of signature {sig!r} "
                               f"({sorted(servable.signature_defs[sig].outputs)})")
        return servable, sig, inputs

    def _predict_response(self, request, servable, sig, outputs):
        response = self.pb["predict"].PredictResponse()
        self._fill_spec(response.model_spec, servable, sig)
        as_content = self.config.enable_serialization_as_tensor_content
        for key in list(request.output_filter) or sorted(outputs):
            response.outputs[key].CopyFrom(array_to_tensor_proto(outputs[key], as_tensor_content=as_content))
        return response

    async def Classify(self, request, context):
        return await self._handle("Classify", request, context, self._classify)

    async def _examples_call(self, request, context, decode, encode):
        """Classify and Regress: decode(request) -> (servable, signature, inputs), run, encode(servable,
        signature, outputs); a large request (or answer) is decoded (encoded) in a worker thread."""
        big = request.ByteSize() > INLINE_BYTES
        servable, sig, inputs = await self._offload(big, decode, request)
        outputs = await self._infer(servable, sig, inputs, context, big)
        return await self._offload(big or _examples(outputs) > 64, encode, servable, sig, outputs)

    async def _classify(self, request, context):
        return await self._examples_call(request, context, self._classify_inputs, self._classify_response)

    def _classify_inputs(self, request):
        servable = self._servable(request.model_spec)
        sig, specs, serialized = self.service.classify_signature(servable, request.model_spec.signature_name or None)
        limit = self.config.max_instances_per_request
        if serialized:      # TF Serving's classification signature: it parses the tf.Examples itself
            return servable, sig, {"inputs": serialized_examples(request.input, limit)}
        return servable, sig, examples_to_inputs(request.input, specs, limit)

    def _classify_response(self, servable, sig, outputs):
        scores, labels = self.service.classifications(outputs, sig)
        response = self.pb["classify"].ClassificationResponse()
        self._fill_spec(response.model_spec, servable, sig)
        for row_scores, row_labels in zip(scores, labels):
            row = response.result.classifications.add()
            for label, score in zip(row_labels, row_scores):
                row.classes.add(label=label, score=float(score))
        return response

    async def Regress(self, request, context):
        return await self._handle("Regress", request, context, self._regress)

    async def _regress(self, request, context):
        return await self._examples_call(request, context, self._regress_inputs, self._regress_response)

    def _regress_inputs(self, request):
        """A tensorflow/serving/regress signature (serialized tf.Examples in); any other is refused
        as TF Serving refuses it."""
        servable = self._servable(request.model_spec)
        sig = self.service.regress_signature(servable, request.model_spec.signature_name or None)
        return servable, sig, {"inputs": serialized_examples(request.input, self.config.max_instances_per_request)}

    def _regress_response(self, servable, sig, outputs):
        response = self.pb["regress"].RegressionResponse()
        self._fill_spec(response.model_spec, servable, sig)
        for value in self.service.regressions(outputs).tolist():
            response.result.regressions.add(value=value)
        return response

    async def MultiInference(self, request, context):
        await context.abort(self.grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served by cnnapp; use Predict")

    async def GetModelMetadata(self, request, context):
        return await self._handle("GetModelMetadata", request, context, self._metadata)

    async def _metadata(self, request, context):
        servable = self._servable(request.model_spec)
        fields = list(request.metadata_field)
        if fields != ["signature_def"]:
            raise ServingError(f"Metadata field(s) {fields} not supported: ask for ['signature_def']")
        pb = self.pb["metadata"]
        sig_map = pb.SignatureDefMap()
        for name, sig in servable.signature_defs.items():
            sig_map.signature_def[name].CopyFrom(sig)
        response = pb.GetModelMetadataResponse()
        self._fill_spec(response.model_spec, servable, "")
        response.metadata["signature_def"].Pack(sig_map)
        return response

    # ------------------------------------------------------------------ ModelService
    async def GetModelStatus(self, request, context):
        return await self._handle("GetModelStatus", request, context, self._status)

    async def _status(self, request, context):
        from tensorflow.core.protobuf import error_codes_pb2
        spec = request.model_spec
        if not spec.name:
            raise ServingError("Missing ModelSpec name")
        choice = spec.WhichOneof("version_choice")
        states = self.service.version_states(spec.name, spec.version.value if choice == "version" else None,
                                             spec.version_label if choice == "version_label" else None)
        pb = self.pb["status"]
        response = pb.GetModelStatusResponse()
        for version, st in states:
            entry = response.model_version_status.add(version=version,
                                                      state=pb.ModelVersionStatus.State.Value(st.state))
            entry.status.error_code = error_codes_pb2.Code.Value(st.error_code)
            entry.status.error_message = st.error
        return response

    async def HandleReloadConfigRequest(self, request, context):
        await context.abort(self.grpc.StatusCode.UNIMPLEMENTED,
                            "HandleReloadConfigRequest is not served by cnnapp; restart with the new --model_config_file")


def _examples(outputs: dict) -> int:
    return next((a.shape[0] for a in outputs.values() if a.ndim), 0)


class _Undecodable:
    """What a request that is not a valid protobuf of its type parses to (answered INVALID_ARGUMENT,
    where grpcio's own deserializer failure would answer INTERNAL)."""

    def __init__(self, reason: str):
        self.reason = reason


def _lenient(message_class):
    def parse(data: bytes):
        try:
            return message_class.FromString(data)
        except Exception as e:  # noqa: BLE001 - DecodeError and friends: the client's bytes are wrong
            return _Undecodable(f"cannot parse the request as {message_class.DESCRIPTOR.full_name}: {str(e)[:120]}")
    return parse


def _handlers(servicer):
    import grpc
    from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                         inference_pb2, model_management_pb2, predict_pb2, regression_pb2)
    tables = {
        "tensorflow.serving.PredictionService": {
            "Classify": (classification_pb2.ClassificationRequest, classification_pb2.ClassificationResponse),
            "Regress": (regression_pb2.RegressionRequest, regression_pb2.RegressionResponse),
            "Predict": (predict_pb2.PredictRequest, predict_pb2.PredictResponse),
            "MultiInference": (inference_pb2.MultiInferenceRequest, inference_pb2.MultiInferenceResponse),
            "GetModelMetadata": (get_model_metadata_pb2.GetModelMetadataRequest,
                                 get_model_metadata_pb2.GetModelMetadataResponse)},
        "tensorflow.serving.ModelService": {
            "GetModelStatus": (get_model_status_pb2.GetModelStatusRequest, get_model_status_pb2.GetModelStatusResponse),
            "HandleReloadConfigRequest": (model_management_pb2.ReloadConfigRequest,
                                          model_management_pb2.ReloadConfigResponse)},
    }

    def guarded(method):
        async def handler(request, context):
            if isinstance(request, _Undecodable):
                servicer.service.metrics.request(UNKNOWN_MODEL, method.__name__, "INVALID_ARGUMENT", 0,
                                                 entrypoint="GRPC")
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
            return await method(request, context)
        return handler

    return [grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(guarded(getattr(servicer, name)),
                                                  request_deserializer=_lenient(req),
                                                  response_serializer=resp.SerializeToString)
        for name, (req, resp) in methods.items()}) for service, methods in tables.items()]


class GrpcServer:
    """A grpc.aio server running on its own event loop in a thread; `stop()` from any thread."""

    def __init__(self, loop, server, thread, box):
        self.loop, self.server, self.thread, self.box = loop, server, thread, box

    def stop(self, grace: float = 2.0) -> None:
        # The loop's own main() stops the server: a stop() coroutine sent from here would end
        # wait_for_termination, main() with it and the loop, and then never finish (a 30 s hang).
        if self.loop.is_closed():
            return
        self.box["grace"] = grace
        self.loop.call_soon_threadsafe(self.box["stop"].set)
        self.thread.join(timeout=grace + 30)


def start_grpc_server(service, host: str, port: int) -> GrpcServer:
    """Bind and start TF Serving's gRPC services for a ServingService (or a ServingApp: its service);
    CnnappError when it cannot bind."""
    check_available()
    import grpc
    service = getattr(service, "service", service)

    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    limit = service.config.max_body_bytes
    started = threading.Event()
    box: dict = {}

    async def main():
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", limit),
                                          ("grpc.max_send_message_length", -1),
                                          ("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(tuple(_handlers(_Servicer(service, asyncio.get_running_loop()))))
        try:
            bound = server.add_insecure_port(address)
        except RuntimeError as e:
            raise CnnappError(f"--port: cannot listen for gRPC on {address} ({e}). Received: {port}") from None
        if not bound:
            raise CnnappError(f"--port: cannot listen for gRPC on {address} (in use?). Received: {port}")
        await server.start()
        box["server"], box["stop"] = server, asyncio.Event()
        started.set()
        await box["stop"].wait()
        await server.stop(box.get("grace", 2.0))

    loop = asyncio.new_event_loop()

    def run():
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(main())
        except BaseException as e:  # noqa: BLE001 - reported to the starting thread below
            box["error"] = e
            started.set()
        finally:
            loop.close()

    thread = threading.Thread(target=run, name="grpc-loop", daemon=True)
    thread.start()
    started.wait(60)
    if "error" in box:
        error = box["error"]
        raise error if isinstance(error, CnnappError) else CnnappError(
            f"--port: the gRPC server did not start ({type(error).__name__}: {error}). Received: {port}")
    if "server" not in box:
        raise CnnappError(f"--port: the gRPC server did not start within 60 s. Received: {port}")
    return GrpcServer(loop, box["server"], thread, box)
