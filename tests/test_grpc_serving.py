"""`cnnapp serve` over gRPC on loopback, driven by tensorflow-serving-api's own stubs, as production
TF Serving clients do: Predict on raw image bytes and raw sentences, Classify, GetModelMetadata,
GetModelStatus, TF Serving's status codes, a model added while serving, and a version switch under
load with no failed call. One real server process (REST and gRPC, batching on) for the module.
"""

from __future__ import annotations

import base64
import os
import shutil
import threading
import time

import numpy as np
import pytest

from conftest import export_tiny_image_model, png_bytes
from test_serving_live import LiveServer

grpc = pytest.importorskip("grpc")
apis = pytest.importorskip("tensorflow_serving.apis", reason="tensorflow-serving-api (make venv installs it)")
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,  # noqa: E402
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc)

IMAGE_CLASSES = ["zero", "one", "two"]
NEW_CLASSES = ["cat", "dog", "eel"]


@pytest.fixture(scope="module")
def setup(model_base, tmp_path_factory):
    base = tmp_path_factory.mktemp("grpc_base")
    staging = tmp_path_factory.mktemp("grpc_staging")
    for name in ("tiny_image", "tiny_text"):
        shutil.copytree(model_base / name, base / name)
    shutil.copytree(model_base / "tiny_image", base / "switchy")
    export_tiny_image_model(staging, name="switchy", class_names=NEW_CLASSES, version=2)
    monitoring = staging / "monitoring.config"     # metrics are off without it, as in TF Serving
    monitoring.write_text('prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }\n')
    server = LiveServer("--model_base_path", base, "--enable_batching", "--max_batch_size", 8,
                        "--batch_timeout_micros", 500, "--file_system_poll_wait_seconds", 0.2,
                        f"--monitoring_config_file={monitoring}", grpc=True)
    channel = grpc.insecure_channel(server.grpc)
    grpc.channel_ready_future(channel).result(timeout=30)
    yield {"server": server, "base": base, "staging": staging, "model_base": model_base,
           "predict": prediction_service_pb2_grpc.PredictionServiceStub(channel),
           "models": model_service_pb2_grpc.ModelServiceStub(channel)}
    channel.close()
    log = server.stop()
    assert "Traceback" not in log, log[-3000:]


def predict_request(model: str, values, *, dtype=None, input_name=None, signature="", version=None):
    import tensorflow as tf
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    if version is not None:
        req.model_spec.version.value = version
    name = input_name or ("image_bytes" if "image" in model or model == "switchy" else "sentences")
    req.inputs[name].CopyFrom(tf.make_tensor_proto(values, dtype=dtype))
    return req


def png(seed: int) -> bytes:
    return png_bytes(np.random.default_rng(seed).integers(0, 255, (8, 8, 1)))


def classes_of(response) -> list[str]:
    import tensorflow as tf
    return [c.decode() for c in tf.make_ndarray(response.outputs["classes"])[0]]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_predict_raw_image_bytes_and_sentences_match_rest(setup):
    import httpx
    import tensorflow as tf
    rest = setup["server"].rest
    images = [png(0), png(1)]
    r = setup["predict"].Predict(predict_request("tiny_image", images, dtype=tf.string), timeout=30)
    assert r.model_spec.name == "tiny_image" and r.model_spec.version.value == 1
    assert r.model_spec.signature_name == "serving_default"
    scores = tf.make_ndarray(r.outputs["scores"])
    assert scores.shape == (2, 3) and np.allclose(scores.sum(axis=1), 1, atol=1e-5)
    assert classes_of(r) == IMAGE_CLASSES
    import base64
    by_rest = httpx.post(f"{rest}/v1/models/tiny_image:predict", timeout=30,
                         json={"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}).json()
    np.testing.assert_allclose(scores, [p["scores"] for p in by_rest["predictions"]], rtol=1e-5)

    sentences = ["a good film", "dull and boring", "é ünïcode ✓"]
    r = setup["predict"].Predict(predict_request("tiny_text", sentences), timeout=30)
    scores = tf.make_ndarray(r.outputs["scores"])
    assert scores.shape == (3, 2)
    by_rest = httpx.post(f"{rest}/v1/models/tiny_text:predict", json={"instances": sentences}, timeout=30).json()
    np.testing.assert_allclose(scores, [p["scores"] for p in by_rest["predictions"]], rtol=1e-5)
    # output_filter, a second signature and an explicit version, as TF Serving takes them
    ids = np.array([[2, 3, 4] + [0] * 9], dtype=np.int64)
    r = setup["predict"].Predict(predict_request("tiny_text", ids, input_name="token_ids",
                                                 signature="serving_token_ids", version=1), timeout=30)
    assert set(r.outputs) == {"scores", "classes"} and r.model_spec.signature_name == "serving_token_ids"
    req = predict_request("tiny_text", ["x"])
    req.output_filter.append("scores")
    assert set(setup["predict"].Predict(req, timeout=30).outputs) == {"scores"}


def test_classify_with_tf_examples(setup):
    import tensorflow as tf
    req = classification_pb2.ClassificationRequest()
    req.model_spec.name = "tiny_text"
    for text in ("a good film", "dull and boring"):
        ex = req.input.example_list.examples.add()
        ex.features.feature["sentences"].bytes_list.value.append(text.encode())
    result = setup["predict"].Classify(req, timeout=30).result.classifications
    assert len(result) == 2
    for row in result:
        assert [c.label for c in row.classes] == ["negative", "positive"]
        assert abs(sum(c.score for c in row.classes) - 1) < 1e-5
    expected = tf.make_ndarray(setup["predict"].Predict(
        predict_request("tiny_text", ["a good film", "dull and boring"]), timeout=30).outputs["scores"])
    np.testing.assert_allclose([[c.score for c in row.classes] for row in result], expected, rtol=1e-5)


@pytest.mark.parametrize("model", ["tiny_image", "tiny_text"])
def test_metadata_is_the_saved_model_signature_def_map(setup, model):
    from tensorflow.core.protobuf import saved_model_pb2
    req = get_model_metadata_pb2.GetModelMetadataRequest()
    req.model_spec.name = model
    req.metadata_field.append("signature_def")
    response = setup["predict"].GetModelMetadata(req, timeout=30)
    assert response.model_spec.name == model and response.model_spec.version.value == 1
    packed = response.metadata["signature_def"]
    assert packed.type_url == "type.googleapis.com/tensorflow.serving.SignatureDefMap"
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    assert packed.Unpack(sig_map)
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((setup["model_base"] / model / "1" / "saved_model.pb").read_bytes())
    [graph] = saved_model.meta_graphs
    assert set(sig_map.signature_def) == set(graph.signature_def)
    for name, sig in graph.signature_def.items():
        assert sig_map.signature_def[name] == sig, name      # protobuf equality: every field


def test_model_status(setup):
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "tiny_text"
    [status] = setup["models"].GetModelStatus(req, timeout=30).model_version_status
    assert status.version == 1 and status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert status.status.error_code == 0 and status.status.error_message == ""


def _code(call, request) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=30)
    return info.value.code(), info.value.details()


def test_status_codes(setup):
    import tensorflow as tf
    predict = setup["predict"].Predict
    code, details = _code(predict, predict_request("nope", ["x"], input_name="sentences"))
    assert code == grpc.StatusCode.NOT_FOUND and "Servable not found for request: Latest(nope)" in details
    code, details = _code(predict, predict_request("tiny_text", ["x"], version=7))
    assert code == grpc.StatusCode.NOT_FOUND and "Specific(tiny_text, 7)" in details
    code, details = _code(predict, predict_request("tiny_text", [1.5, 2.5], dtype=tf.float32))   # bad tensor
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "expects string but float32 is provided" in details
    code, _ = _code(predict, predict_request("tiny_text", ["x"], input_name="wrong"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = _code(predict, predict_request("tiny_text", ["x"], signature="nope"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, details = _code(predict, predict_request("tiny_image", [b"not an image"], dtype=tf.string))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "image" in details.lower()
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "nope"
    assert _code(setup["models"].GetModelStatus, status)[0] == grpc.StatusCode.NOT_FOUND


def test_model_added_while_serving(setup):
    server = setup["server"]
    mark = len(server.lines)
    shutil.copytree(setup["model_base"] / "tiny_text", setup["base"] / ".late_text.tmp")
    os.rename(setup["base"] / ".late_text.tmp", setup["base"] / "late_text")     # appears whole
    assert server.wait_log("serving late_text version 1", 120, start=mark), server.log[-3000:]
    r = setup["predict"].Predict(predict_request("late_text", ["a good film"], input_name="sentences"), timeout=30)
    assert [c.decode() for c in __import__("tensorflow").make_ndarray(r.outputs["classes"])[0]] == ["negative", "positive"]


def test_version_switch_under_load_has_no_failed_call(setup):
    import tensorflow as tf
    server, predict = setup["server"], setup["predict"].Predict
    request = predict_request("switchy", [png(3)], dtype=tf.string)
    seen: list[tuple[str, list]] = []
    failures: list[str] = []
    switched = threading.Event()
    stop = threading.Event()
    lock = threading.Lock()

    def client():
        after = 0
        while not stop.is_set() and after < 30:
            try:
                classes = classes_of(predict(request, timeout=30))
                with lock:
                    seen.append(("after" if switched.is_set() else "before", classes))
            except grpc.RpcError as e:
                failures.append(f"{e.code()}: {e.details()}")
            if switched.is_set():
                after += 1

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(seen) < 30 and time.monotonic() < deadline and not failures:
            time.sleep(0.01)      # let load build up (a condition, bounded)
        mark = len(server.lines)
        os.rename(setup["staging"] / "switchy" / "2", setup["base"] / "switchy" / "2")   # atomic, as export does
        assert server.wait_log("serving switchy version 2", 120, start=mark), server.log[-3000:]
        switched.set()
        assert server.wait_log("unloaded switchy version 1", 60, start=mark), server.log[-3000:]
    finally:
        for t in threads:
            t.join(timeout=120)
        stop.set()
    assert not failures, failures[:5]
    assert seen[0][1] == IMAGE_CLASSES and seen[-1][1] == NEW_CLASSES
    assert {tuple(c) for _, c in seen} == {tuple(IMAGE_CLASSES), tuple(NEW_CLASSES)}
    assert all(c == NEW_CLASSES for when, c in seen[-20:] if when == "after")
    req = get_model_status_pb2.GetModelStatusRequest()
    req.model_spec.name = "switchy"
    states = {s.version: s.state for s in setup["models"].GetModelStatus(req, timeout=30).model_version_status}
    assert states == {1: get_model_status_pb2.ModelVersionStatus.END, 2: get_model_status_pb2.ModelVersionStatus.AVAILABLE}


def test_grpc_requests_are_in_the_metrics(setup):
    import httpx
    text = httpx.get(f"{setup['server'].rest}/monitoring/prometheus/metrics", timeout=30).text
    assert 'API="Predict",entrypoint="GRPC",model_name="tiny_text",status="OK"' in text
    assert 'entrypoint="GRPC",model_name="(unknown)",status="NOT_FOUND"' in text


# ---------------------------------------------------------------------------- issue 25: bounded tensor decoding

def _proc_status_mb(pid: int, key: str) -> float:
    for line in open(f"/proc/{pid}/status").read().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def tensor_request(model: str, input_name: str, proto, *, signature: str = "") -> predict_pb2.PredictRequest:
    req = predict_pb2.PredictRequest()
    req.model_spec.name = model
    req.model_spec.signature_name = signature
    req.inputs[input_name].CopyFrom(proto)
    return req


def test_hostile_tensors_are_refused_before_anything_is_allocated(setup):
    """One float_val used to fill a [1,1,2^26,1] or [1,8000,8000,1] tensor (0.78 -> 4.2 GB for one
    67-byte request): the shape is now capped from the signature before allocating, a value count
    other than the shape's or 1 is refused, and the server's peak memory barely moves."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2
    server, predict = setup["server"], setup["predict"].Predict
    codes = grpc.StatusCode

    def pixels(proto):
        return tensor_request("tiny_image", "pixels", proto, signature="serving_pixels")
    cases = [
        (pixels(tf.make_tensor_proto(0.5, shape=[1, 1, 2 ** 26, 1])), codes.RESOURCE_EXHAUSTED, "free dimensions"),
        (pixels(tf.make_tensor_proto(0.5, shape=[1, 8000, 8000, 1])), codes.RESOURCE_EXHAUSTED, "free dimensions"),
        (pixels(tf.make_tensor_proto(0.5, shape=[64, 4000, 4000, 1])), codes.RESOURCE_EXHAUSTED, "--max_body"),
        (pixels(tf.make_tensor_proto([1.0, 2.0, 3.0], shape=[1, 8, 8, 1])), codes.INVALID_ARGUMENT,
         "3 values in float_val for shape [1, 8, 8, 1], which holds 64"),
        (pixels(tensor_pb2.TensorProto(dtype=tf.float32.as_datatype_enum, float_val=[0.0] * 65,
                                       tensor_shape=tf.TensorShape([1, 8, 8, 1]).as_proto())),
         codes.INVALID_ARGUMENT, "65 values in float_val"),
        (tensor_request("tiny_image", "image_bytes", tf.make_tensor_proto([b"x" * 100_000], shape=[10_000])),
         codes.RESOURCE_EXHAUSTED, "image_bytes"),
    ]
    assert cases[0][0].ByteSize() < 80 and cases[1][0].ByteSize() < 80      # tens of bytes each
    rss_before = _proc_status_mb(server.proc.pid, "VmRSS")
    with open(f"/proc/{server.proc.pid}/clear_refs", "w") as f:
        f.write("5")                  # VmHWM (the peak RSS) restarts from the current RSS
    for request, code, fragment in cases:
        got, details = _code(predict, request)
        assert got == code and fragment in details, (got, details)
        assert "pixels" in details or "image_bytes" in details, details     # names the input
        assert "\n" not in details and len(details) < 400, details
    # eight at once, as the probe sent them: answered concurrently, all refused
    futures = [predict.future(cases[1][0], timeout=30) for _ in range(8)]
    for future in futures:
        with pytest.raises(grpc.RpcError) as info:
            future.result()
        assert info.value.code() == codes.RESOURCE_EXHAUSTED
    peak = _proc_status_mb(server.proc.pid, "VmHWM")
    assert peak - rss_before < 200, f"server peak RSS grew {peak - rss_before:.0f} MB ({rss_before:.0f} -> {peak:.0f})"
    # the scalar broadcast TensorFlow accepts still works, and the server is up
    r = predict(pixels(tf.make_tensor_proto(128.0, shape=[2, 8, 8, 1])), timeout=30)
    assert [d.size for d in r.outputs["scores"].tensor_shape.dim] == [2, 3]


def test_echoed_values_are_clipped(setup):
    """A 1 MB model name used to come back whole in the status details, which the client refused
    (RESOURCE_EXHAUSTED instead of NOT_FOUND)."""
    code, details = _code(setup["predict"].Predict, predict_request("m" * 1_000_000, ["x"], input_name="sentences"))
    assert code == grpc.StatusCode.NOT_FOUND and details.startswith("Servable not found for request: Latest(mmm")
    assert len(details) < 200, len(details)
    code, details = _code(setup["predict"].Predict, predict_request("tiny_text", ["x"], input_name="k" * 1_000_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) < 1100, len(details)
    code, details = _code(setup["predict"].Predict, predict_request("tiny_text", ["x"], signature="s" * 1_000_000))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and len(details) < 1100, len(details)


# ---------------------------------------------------------------------------- issue 24: typed outputs

def _image_scores_by_rest(rest: str, images: list[bytes]) -> np.ndarray:
    import base64
    import httpx
    body = {"instances": [{"b64": base64.b64encode(i).decode()} for i in images]}
    predictions = httpx.post(f"{rest}/v1/models/tiny_image:predict", json=body, timeout=30).json()["predictions"]
    return np.array([p["scores"] for p in predictions])


def test_typed_outputs_read_the_way_the_keras_io_client_reads_them(setup):
    """TF Serving fills float_val/string_val (Tensor::AsProtoField) unless told otherwise; the
    keras-io tf_serving client reads `.float_val` and reshapes it by `tensor_shape`."""
    import tensorflow as tf
    images = [png(5), png(6)]
    r = setup["predict"].Predict(predict_request("tiny_image", images, dtype=tf.string), timeout=30)
    proto = r.outputs["scores"]
    assert proto.dtype == tf.float32.as_datatype_enum and not proto.tensor_content
    scores = tf.constant(proto.float_val, shape=tf.TensorShape(proto.tensor_shape)).numpy()
    assert scores.shape == (2, 3)
    np.testing.assert_allclose(scores, _image_scores_by_rest(setup["server"].rest, images), rtol=1e-6)
    classes = r.outputs["classes"]
    assert not classes.tensor_content and [d.size for d in classes.tensor_shape.dim] == [2, 3]
    assert [c.decode() for c in classes.string_val] == IMAGE_CLASSES * 2


def test_enable_serialization_as_tensor_content(setup, tmp_path):
    """--enable_serialization_as_tensor_content: tensor_content set, typed fields empty; strings in
    TensorFlow's string-list encoding, which TensorFlow's own parser reads back. The server is the
    one `cnnapp serve` starts (the app object and start_grpc_server), in this process: one model
    loads in a second, where a second `cnnapp serve` process takes tens."""
    import tensorflow as tf
    from cnnapp.serving.grpc_server import start_grpc_server
    from cnnapp.serving.server import build_config
    from test_serving_live import free_port
    from cnnapp.serving import create_app
    config = build_config(model_base_path=setup["model_base"] / "tiny_image", model_name="tiny_image",
                          enable_serialization_as_tensor_content=True)
    serving_app = create_app(config)
    port = free_port()
    server = start_grpc_server(serving_app, "127.0.0.1", port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        images = [png(7), png(8)]
        r = stub.Predict(predict_request("tiny_image", images, dtype=tf.string), timeout=30)
        scores, classes = r.outputs["scores"], r.outputs["classes"]
        assert scores.tensor_content and not scores.float_val
        assert classes.tensor_content and not classes.string_val
        np.testing.assert_allclose(tf.make_ndarray(scores), _image_scores_by_rest(setup["server"].rest, images),
                                   rtol=1e-6)
        decoded = tf.io.parse_tensor(classes.SerializeToString(), tf.string).numpy()
        assert decoded.shape == (2, 3) and [c.decode() for c in decoded[0]] == IMAGE_CLASSES
    finally:
        channel.close()
        server.stop(grace=1)
        serving_app.close()


def test_tensor_content_flag_parses_as_in_tf_serving():
    """`--enable_serialization_as_tensor_content[=true|false]`, spelled as tensorflow_model_server spells it."""
    from cnnapp.cli.serve import serve
    parsed = [serve.make_context("serve", args).params["enable_serialization_as_tensor_content"]
              for args in (["--enable_serialization_as_tensor_content"], ["--enable_serialization_as_tensor_content=false"],
                           ["--enable-serialization-as-tensor-content", "true"], [])]
    assert parsed == [True, False, True, None]          # None: not given (ServerConfig holds the default)


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_both_transports_over_one_service_and_a_grpc_deadline_stops_the_work(model_base):
    """REST and gRPC take one ServingService (no REST app behind gRPC): the same models and
    metrics; a gRPC client's deadline cancels the request's work, which stops before its end."""
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, ServingApp, ServingService, discover_models
    from cnnapp.serving.grpc_server import start_grpc_server
    from test_serving_live import free_port
    config = ServerConfig(models=discover_models(model_base, "tiny_text"), poll_seconds=0, chunk_examples=1,
                          prometheus_path="/metrics")
    service = ServingService(config)
    rest = TestClient(ServingApp(config, service=service).app, base_url="http://localhost")
    port = free_port()
    server = start_grpc_server(service, "127.0.0.1", port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        r = stub.Predict(predict_request("tiny_text", [b"a good film"]), timeout=30)
        grpc_scores = list(r.outputs["scores"].float_val)
        rest_scores = rest.post("/v1/models/tiny_text:predict", json={"instances": ["a good film"]}).json()
        np.testing.assert_allclose(grpc_scores, rest_scores["predictions"][0]["scores"], rtol=1e-6)
        metrics = rest.get("/metrics").text
        assert 'entrypoint="GRPC"' in metrics and 'entrypoint="REST"' in metrics, metrics[:500]
        before = service.work.chunks
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(predict_request("tiny_text", [b"a good film"] * 2000), timeout=0.3)
        assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert service.work.wait_idle(60)
        assert service.work.chunks - before < 2000, "the work went on past the client's deadline"
        assert service.slots.free() == service.slots.count       # its heavy-request slot came back
    finally:
        channel.close()
        server.stop(grace=1)
        service.close()


@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")
def test_grpc_classify_and_regress_on_tf_example_signatures_answer_as_rest(tmp_path):
    """TF Serving's own signature kinds over gRPC, as REST answers them on the same service:
    Regress runs a `tensorflow/serving/regress` signature (tf.Examples in, one value each; the
    context reaches every example), Classify feeds serialized tf.Examples to a
    `tensorflow/serving/classify` one, and Regress on a predict signature is refused, naming the
    method it needs."""
    from starlette.testclient import TestClient
    from tensorflow.core.example import example_pb2
    from cnnapp.serving import ServerConfig, ServingApp, ServingService, discover_models
    from cnnapp.serving.grpc_server import start_grpc_server
    from tensorflow_serving.apis import regression_pb2
    from test_serving_conformance import CLASSIFY_EXAMPLE, REGRESS, _export_models
    from test_serving_live import free_port
    _export_models(tmp_path)
    config = ServerConfig(models=discover_models(tmp_path), poll_seconds=0)
    service = ServingService(config)
    rest = TestClient(ServingApp(config, service=service).app, base_url="http://localhost")
    port = free_port()
    server = start_grpc_server(service, "127.0.0.1", port)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def example(**features) -> example_pb2.Example:
        ex = example_pb2.Example()
        for name, value in features.items():
            if isinstance(value, float):
                ex.features.feature[name].float_list.value.append(value)
            else:
                ex.features.feature[name].bytes_list.value.append(value)
        return ex

    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = regression_pb2.RegressionRequest()
        request.model_spec.name, request.model_spec.signature_name = "half_plus_three", REGRESS
        request.input.example_list.examples.extend([example(x=1.0), example(x=2.0)])
        response = stub.Regress(request, timeout=30)
        grpc_values = [r.value for r in response.result.regressions]
        rest_values = rest.post("/v1/models/half_plus_three:regress",
                                json={"signature_name": REGRESS, "examples": [{"x": 1.0}, {"x": 2.0}]}).json()
        assert grpc_values == rest_values["results"] == [3.5, 4.0]
        assert (response.model_spec.name, response.model_spec.version.value,
                response.model_spec.signature_name) == ("half_plus_three", 123, REGRESS)

        with_context = regression_pb2.RegressionRequest()
        with_context.model_spec.name, with_context.model_spec.signature_name = "half_plus_three", REGRESS
        with_context.input.example_list_with_context.context.CopyFrom(example(x=4.0))
        with_context.input.example_list_with_context.examples.extend([example(), example()])
        assert [r.value for r in stub.Regress(with_context, timeout=30).result.regressions] == [5.0, 5.0]

        request.model_spec.signature_name = ""          # serving_default: a predict signature
        with pytest.raises(grpc.RpcError) as e:
            stub.Regress(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "tensorflow/serving/regress" in e.value.details()

        classify = classification_pb2.ClassificationRequest()
        classify.model_spec.name, classify.model_spec.signature_name = "objects_examples", "classify_objects"
        for ex in CLASSIFY_EXAMPLE["examples"]:
            classify.input.example_list.examples.append(example(image=base64.b64decode(ex["image"]["b64"]),
                                                                caption=ex["caption"].encode()))
        rows = stub.Classify(classify, timeout=30).result.classifications
        grpc_rows = [[[c.label, c.score] for c in row.classes] for row in rows]
        assert grpc_rows == rest.post("/v1/models/objects_examples:classify", json=CLASSIFY_EXAMPLE).json()["results"]
        assert grpc_rows == [[["image", 2.75], ["caption", 1.75]], [["image", 4.75], ["caption", 2.25]]]
    finally:
        channel.close()
        server.stop(grace=1)
        service.close()
