"""TF Serving's gRPC API on grpcio, from tensorflow-serving-api's own protos (port 8500 by convention).

PredictionService: Predict, Classify, Regress (refused: cnnapp models are classifiers),
GetModelMetadata; ModelService: GetModelStatus. Same models, versions, labels, batching, instance
cap and chunking as REST (both read the one `ServingApp`), with TF Serving's status codes:
NOT_FOUND for an unknown model/version/label, INVALID_ARGUMENT for a bad request, UNAVAILABLE when
the batch queue is full, DEADLINE_EXCEEDED past the client's deadline.

>>> server = start_grpc_server(serving_app, "127.0.0.1", 8500); ...; server.stop(grace=2)

tensorflow-serving-api declares a dependency on full `tensorflow`, which would stack a second
TensorFlow on tensorflow-cpu: it is installed with `--no-deps` (see the Makefile).
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from cnnapp.errors import CnnappError
from cnnapp.serving.codec import InputSpec, NotFound, ServingError, check_instances
from cnnapp.serving.metrics import UNKNOWN_MODEL
from cnnapp.serving.models import DeadlineExceeded, Servable

log = logging.getLogger(__name__)

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


# Which TensorProto field holds the values of each dtype (TF's tensor.proto).
_VALUE_FIELDS = {"float32": "float_val", "float64": "double_val", "float16": "half_val", "int32": "int_val",
                 "int16": "int_val", "int8": "int_val", "uint8": "int_val", "uint16": "int_val",
                 "int64": "int64_val", "bool": "bool_val", "string": "string_val"}


def tensor_to_array(proto, spec: InputSpec, max_instances: int, max_elements: int) -> np.ndarray:
    """A request TensorProto -> numpy array for `spec`, every size checked BEFORE anything is
    allocated (a proto of a few bytes can declare a [10^12] tensor)."""
    import tensorflow as tf
    want = tf.as_dtype(spec.dtype)
    got = proto.dtype
    if got != want.as_datatype_enum:
        try:
            got_name = tf.as_dtype(got).name
        except (TypeError, ValueError):
            got_name = f"dtype enum {got}"
        raise ServingError(f"input {spec.describe()}: expects {want.name} but {got_name} is provided")
    if proto.tensor_shape.unknown_rank:
        raise ServingError(f"input {spec.describe()}: the tensor has no shape (unknown_rank)")
    dims = [d.size for d in proto.tensor_shape.dim]
    if any(d < 0 for d in dims):
        raise ServingError(f"input {spec.describe()}: negative dimension in shape {dims}")
    if spec.shape is not None:
        if len(dims) != len(spec.shape):
            raise ServingError(f"input {spec.describe()}: expected rank {len(spec.shape)} (with the batch dimension), "
                               f"got shape {dims}")
        for i, (w, g) in enumerate(zip(spec.shape, dims)):
            if w is not None and w != g:
                raise ServingError(f"input {spec.describe()}: dimension {i} must be {w}, got shape {dims}")
    if dims:
        if dims[0] == 0:
            raise ServingError(f"input {spec.describe()}: no examples (an empty batch)")
        check_instances(dims[0], max_instances, "examples (first dimension)")
    count = math.prod(dims)
    if count > max_elements:
        raise ServingError(f"input {spec.describe()}: shape {dims} holds {count} values, over the limit of "
                           f"{max_elements}", status=413)
    if proto.tensor_content:
        if spec.dtype == "string":
            raise ServingError(f"input {spec.describe()}: string tensors travel in string_val, not tensor_content")
        if len(proto.tensor_content) != count * want.size:
            raise ServingError(f"input {spec.describe()}: tensor_content holds {len(proto.tensor_content)} bytes, "
                               f"shape {dims} needs {count * want.size}")
    else:
        values = len(getattr(proto, _VALUE_FIELDS.get(spec.dtype, "float_val")))
        # TF fills a tensor from fewer values by repeating the last one; allow exactly that.
        if not (values == count or (values >= 1 and values < count and spec.dtype != "string")):
            raise ServingError(f"input {spec.describe()}: {values} values given for shape {dims} ({count} values)")
    try:
        array = tf.make_ndarray(proto)
    except Exception as e:  # noqa: BLE001 - whatever numpy/TF says about a malformed proto is the client's
        raise ServingError(f"input {spec.describe()}: cannot read the tensor ({str(e)[:160]})") from None
    if spec.dtype == "string" and array.dtype != object:
        array = array.astype(object)
    return array


def _example_values(feature, spec: InputSpec):
    kind = feature.WhichOneof("kind")
    if kind is None:
        raise ServingError(f"feature {spec.name!r} is empty")
    values = list(getattr(feature, kind).value)
    if spec.dtype == "string" and kind != "bytes_list":
        raise ServingError(f"feature {spec.name!r}: {spec.describe()} needs bytes_list. Received: {kind}")
    if spec.dtype != "string" and kind == "bytes_list":
        raise ServingError(f"feature {spec.name!r}: {spec.describe()} needs float_list or int64_list. Received: {kind}")
    per_example = spec.shape[1:] if spec.shape is not None else None
    if per_example is None or any(d is None for d in per_example):
        raise ServingError(f"feature {spec.name!r}: {spec.describe()} has no fixed per-example shape to classify with")
    if len(values) != math.prod(per_example):
        raise ServingError(f"feature {spec.name!r}: {len(values)} values, {spec.describe()} needs "
                           f"{math.prod(per_example)} per example")
    return values[0] if not per_example else np.asarray(values).reshape(per_example).tolist()


def examples_to_inputs(input_proto, specs: dict[str, InputSpec], max_instances: int) -> dict[str, np.ndarray]:
    """tensorflow.serving.Input (tf.Examples, optional context) -> numpy inputs by signature input name."""
    which = input_proto.WhichOneof("kind")
    if which == "example_list":
        examples, context = list(input_proto.example_list.examples), None
    elif which == "example_list_with_context":
        examples, context = (list(input_proto.example_list_with_context.examples),
                             input_proto.example_list_with_context.context)
    else:
        raise ServingError("Input is empty: expected example_list or example_list_with_context")
    if not examples:
        raise ServingError("Input has no examples")
    check_instances(len(examples), max_instances, "examples")
    columns: dict[str, list] = {n: [] for n in specs}
    for ex in examples:
        features = dict(context.features.feature) if context is not None else {}
        features.update(ex.features.feature)
        if set(features) != set(specs):
            raise ServingError(f"example features must be exactly the signature's inputs {list(specs)}. "
                               f"Received: {sorted(features)[:10]}")
        for n, spec in specs.items():
            columns[n].append(_example_values(features[n], spec))
    out = {}
    for n, spec in specs.items():
        if spec.dtype == "string":
            arr = np.empty(len(columns[n]), dtype=object)
            arr[:] = columns[n]
            out[n] = arr
        else:
            arr = np.asarray(columns[n])
            if spec.np_dtype.kind == "f" and not np.all(np.abs(arr[np.isfinite(arr)]) <= np.finfo(spec.np_dtype).max):
                raise ServingError(f"feature {n!r}: a value overflows {spec.dtype}")
            out[n] = arr.astype(spec.np_dtype)
    return out


class _Servicer:
    """Both services' methods; each RPC is one `_handle` around a small function."""

    def __init__(self, serving_app):
        import grpc
        from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                             predict_pb2, regression_pb2)
        self.grpc, self.app = grpc, serving_app
        self.manager, self.config, self.metrics = serving_app.manager, serving_app.config, serving_app.metrics
        self.pb = {"predict": predict_pb2, "classify": classification_pb2, "metadata": get_model_metadata_pb2,
                   "status": get_model_status_pb2, "regress": regression_pb2}
        self.codes = {404: grpc.StatusCode.NOT_FOUND, 408: grpc.StatusCode.DEADLINE_EXCEEDED,
                      413: grpc.StatusCode.RESOURCE_EXHAUSTED, 503: grpc.StatusCode.UNAVAILABLE}

    # ------------------------------------------------------------------ plumbing
    def _handle(self, api: str, request, context, fn):
        started = time.perf_counter()
        name = request.model_spec.name
        code = self.grpc.StatusCode.OK
        try:
            return fn(request, context)
        except ServingError as e:
            code = self.codes.get(e.status, self.grpc.StatusCode.INVALID_ARGUMENT)
            context.abort(code, str(e))
        except Exception as e:  # noqa: BLE001 - a bug answers INTERNAL and is logged, the server stays up
            code = self.grpc.StatusCode.INTERNAL
            log.exception("internal error in gRPC %s", api)
            context.abort(code, f"Internal error: {type(e).__name__}: {str(e)[:200]}")
        finally:
            self.metrics.request(name if self.manager.knows(name) else UNKNOWN_MODEL, api, code.name,
                                 (time.perf_counter() - started) * 1e6, entrypoint="GRPC")

    def _servable(self, spec) -> Servable:
        choice = spec.WhichOneof("version_choice")
        version = spec.version.value if choice == "version" else None
        label = spec.version_label if choice == "version_label" else None
        if not spec.name:
            raise ServingError("Missing ModelSpec name")
        return self.manager.resolve(spec.name, version, label)

    @staticmethod
    def _deadline(context) -> float | None:
        remaining = context.time_remaining()
        return None if remaining is None else time.monotonic() + remaining

    def _fill_spec(self, out, servable: Servable, signature: str) -> None:
        out.name = servable.name
        out.version.value = servable.version
        out.signature_name = signature

    # ------------------------------------------------------------------ PredictionService
    def Predict(self, request, context):
        return self._handle("Predict", request, context, self._predict)

    def _predict(self, request, context):
        import tensorflow as tf
        servable = self._servable(request.model_spec)
        sig, specs = servable.signature(request.model_spec.signature_name or None)
        if set(request.inputs) != set(specs):
            raise ServingError(f"input keys must be exactly the signature's inputs {list(specs)} (signature {sig!r}). "
                               f"Received: {sorted(request.inputs)[:10]}")
        max_elements = self.config.max_body_bytes
        inputs = {n: tensor_to_array(request.inputs[n], specs[n], self.config.max_instances_per_request, max_elements)
                  for n in specs}
        sizes = {a.shape[0] for a in inputs.values() if a.ndim}
        if len(sizes) > 1:
            raise ServingError(f"inputs disagree on the batch size (first dimension). Received sizes: {sorted(sizes)}")
        wanted = list(request.output_filter)
        outputs = servable.infer(sig, inputs, deadline=self._deadline(context))
        unknown = [k for k in wanted if k not in outputs]
        if unknown:
            raise ServingError(f"output_filter names {unknown}, not outputs of signature {sig!r} ({sorted(outputs)})")
        response = self.pb["predict"].PredictResponse()
        self._fill_spec(response.model_spec, servable, sig)
        for key in wanted or sorted(outputs):
            response.outputs[key].CopyFrom(tf.make_tensor_proto(outputs[key]))
        return response

    def Classify(self, request, context):
        return self._handle("Classify", request, context, self._classify)

    def _classify(self, request, context):
        servable = self._servable(request.model_spec)
        sig, specs = servable.signature(request.model_spec.signature_name or None)
        inputs = examples_to_inputs(request.input, specs, self.config.max_instances_per_request)
        outputs = servable.infer(sig, inputs, deadline=self._deadline(context))
        if "scores" not in outputs or outputs["scores"].ndim != 2:
            raise ServingError(f"signature {sig!r} has no [batch, classes] 'scores' output to classify with; use Predict")
        pb = self.pb["classify"]
        response = pb.ClassificationResponse()
        self._fill_spec(response.model_spec, servable, sig)
        scores, classes = outputs["scores"], outputs.get("classes")
        for i in range(scores.shape[0]):
            row = response.result.classifications.add()
            for j in range(scores.shape[1]):
                label = classes[i][j] if classes is not None else str(j).encode()
                row.classes.add(label=label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label),
                                score=float(scores[i][j]))
        return response

    def Regress(self, request, context):
        def refuse(request, context):
            servable = self._servable(request.model_spec)
            sig, _ = servable.signature(request.model_spec.signature_name or None)
            raise ServingError(f"Expected regression signature method_name to be tensorflow/serving/regress; "
                               f"cnnapp models are classifiers (signature {sig!r}): use Predict or Classify")
        return self._handle("Regress", request, context, refuse)

    def MultiInference(self, request, context):
        context.abort(self.grpc.StatusCode.UNIMPLEMENTED, "MultiInference is not served by cnnapp; use Predict")

    def GetModelMetadata(self, request, context):
        return self._handle("GetModelMetadata", request, context, self._metadata)

    def _metadata(self, request, context):
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
    def GetModelStatus(self, request, context):
        return self._handle("GetModelStatus", request, context, self._status)

    def _status(self, request, context):
        from tensorflow.core.protobuf import error_codes_pb2
        spec = request.model_spec
        if not spec.name:
            raise ServingError("Missing ModelSpec name")
        choice = spec.WhichOneof("version_choice")
        states = self.manager.version_states(spec.name, spec.version.value if choice == "version" else None,
                                             spec.version_label if choice == "version_label" else None)
        pb = self.pb["status"]
        response = pb.GetModelStatusResponse()
        for version, st in states:
            entry = response.model_version_status.add(version=version,
                                                      state=pb.ModelVersionStatus.State.Value(st.state))
            entry.status.error_code = error_codes_pb2.Code.Value(st.error_code)
            entry.status.error_message = st.error
        return response

    def HandleReloadConfigRequest(self, request, context):
        context.abort(self.grpc.StatusCode.UNIMPLEMENTED,
                      "HandleReloadConfigRequest is not served by cnnapp; restart with the new --model_config_file")


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
    from tensorflow_serving.apis import model_service_pb2 as _  # noqa: F401 - registers ModelService
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
        def handler(request, context):
            if isinstance(request, _Undecodable):
                servicer.metrics.request(UNKNOWN_MODEL, method.__name__, "INVALID_ARGUMENT", 0, entrypoint="GRPC")
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
            return method(request, context)
        return handler

    return [grpc.method_handlers_generic_handler(service, {
        name: grpc.unary_unary_rpc_method_handler(guarded(getattr(servicer, name)),
                                                  request_deserializer=_lenient(req),
                                                  response_serializer=resp.SerializeToString)
        for name, (req, resp) in methods.items()}) for service, methods in tables.items()]


def start_grpc_server(serving_app, host: str, port: int, *, max_workers: int = 16):
    """Bind and start TF Serving's gRPC services for `serving_app`; returns the started grpc.Server."""
    check_available()
    import grpc

    servicer = _Servicer(serving_app)
    limit = serving_app.config.max_body_bytes
    server = grpc.server(ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
                         options=[("grpc.max_receive_message_length", limit),
                                  ("grpc.max_send_message_length", -1),
                                  ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers(tuple(_handlers(servicer)))
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        bound = server.add_insecure_port(address)
    except RuntimeError as e:
        raise CnnappError(f"--port: cannot listen for gRPC on {address} ({e}). Received: {port}") from None
    if not bound:
        raise CnnappError(f"--port: cannot listen for gRPC on {address} (in use?). Received: {port}")
    server.start()
    return server
