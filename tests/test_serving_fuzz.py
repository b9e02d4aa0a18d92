"""Fuzz the serving app: over 2,000 malformed or hostile REST requests (in-process, and again over
loopback against a real `cnnapp serve`) and over 500 hostile gRPC calls, none answered 5xx or
INTERNAL/UNKNOWN, every REST error in TF Serving's `{"error": ...}` shape, good requests between them
still answered correctly, and the metrics page bounded however many made-up names are asked for."""

from __future__ import annotations

import base64
import json
import random

import numpy as np
import pytest

from conftest import png_bytes
from hostile import hostile_grpc_calls, hostile_requests

pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_fuzz_hostile_requests_never_5xx(model_base):
    from starlette.testclient import TestClient
    from cnnapp.serving import BatchingParameters, ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(model_base), max_body_bytes=1_000_000,
                                      batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=100)))
    client = TestClient(serving.app, base_url="http://localhost")
    png = base64.b64encode(png_bytes(np.arange(64).reshape(8, 8, 1) * 3)).decode()
    good = [("/v1/models/tiny_image:predict", {"instances": [{"b64": png}]}),
            ("/v1/models/tiny_text:predict", {"instances": ["a good film"]}),
            ("/v1/models/tiny_text:classify", {"examples": [{"sentences": "dull and boring"}]})]
    expected = {path: client.post(path, json=body).json() for path, body in good}
    good_bodies = [json.dumps(body).encode() for _, body in good]

    counts: dict[int, int] = {}
    for i, (method, path, body) in enumerate(hostile_requests(random.Random(1234), good_bodies)):
        r = client.request(method, path, content=body, headers={"content-type": "application/json"})
        counts[r.status_code] = counts.get(r.status_code, 0) + 1
        context = f"request {i}: {method} {path[:120]} {body[:120]!r} -> {r.status_code} {r.text[:300]}"
        assert r.status_code < 500, context
        if r.status_code >= 400:
            err = r.json()
            assert list(err) == ["error"] and isinstance(err["error"], str) and err["error"], context
        if i % 10 == 0:     # a good request between hostile ones is still answered correctly
            path, body = good[(i // 10) % len(good)]
            ok = client.post(path, json=body)
            assert ok.status_code == 200, ok.text
            np.testing.assert_allclose(_numbers(ok.json()), _numbers(expected[path]), rtol=1e-5)
    assert sum(counts.values()) >= 2000
    assert sum(n for code, n in counts.items() if 400 <= code < 500) > 1800, counts
    check_metrics_bounded(client.get("/monitoring/prometheus/metrics").text)
    serving.manager.stop()


SERVED = {"tiny_text", "tiny_image", "(unknown)", ""}


def check_metrics_bounded(text: str) -> None:
    """Hundreds of made-up model names were asked for: none is a label value, and the page stays
    the size that the served models, APIs and status codes make (before the fix, every made-up
    name added ~20 series)."""
    import re
    names = set(re.findall(r'model_name="([^"]*)"', text))
    assert names <= SERVED, sorted(names - SERVED)[:10]
    lines = text.count("\n")
    assert lines < 2500, f"metrics page has {lines} lines"


def _numbers(doc) -> list[float]:
    if isinstance(doc, dict):
        return [x for k in sorted(doc) for x in _numbers(doc[k])]
    if isinstance(doc, list):
        return [x for v in doc for x in _numbers(v)]
    return [doc] if isinstance(doc, float) else []


# ---------------------------------------------------------------------------- a real server: REST and gRPC

@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_fuzz_real_server_rest_and_grpc(model_base):
    grpc = pytest.importorskip("grpc")
    pytest.importorskip("tensorflow_serving.apis")
    import httpx
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    from test_serving_live import LiveServer

    server = LiveServer("--model_base_path", model_base, "--max_body", 1_000_000, "--enable_batching",
                        "--batch_timeout_micros", 100, "--file_system_poll_wait_seconds", 0, grpc=True)
    try:
        png = png_bytes(np.arange(64).reshape(8, 8, 1) * 3)
        good_rest = ("/v1/models/tiny_text:predict", {"instances": ["a good film"]})
        good_bodies = [json.dumps(good_rest[1]).encode()]
        rest_codes: dict[int, int] = {}
        with httpx.Client(base_url=server.rest, timeout=60) as http:
            expected = http.post(good_rest[0], json=good_rest[1]).json()
            for i, (method, path, body) in enumerate(hostile_requests(random.Random(99), good_bodies)):
                r = http.request(method, path, content=body, headers={"content-type": "application/json"})
                rest_codes[r.status_code] = rest_codes.get(r.status_code, 0) + 1
                context = f"request {i}: {method} {path[:120]} {body[:120]!r} -> {r.status_code} {r.text[:300]}"
                assert r.status_code < 500, context
                assert list(r.json()) == (["error"] if r.status_code >= 400 else list(r.json())), context
                if i % 50 == 0:
                    assert http.post(good_rest[0], json=good_rest[1]).json() == expected

        channel = grpc.insecure_channel(server.grpc)
        good = predict_pb2.PredictRequest()
        good.model_spec.name = "tiny_image"
        good.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([png]))
        grpc_codes: dict[str, int] = {}
        calls = {m: channel.unary_unary(f"/tensorflow.serving.{'ModelService' if m == 'GetModelStatus' else 'PredictionService'}/{m}",
                                        request_serializer=None, response_deserializer=None)
                 for m in ("Predict", "Classify", "Regress", "GetModelMetadata", "GetModelStatus")}
        good_scores = None
        for i, (method, payload) in enumerate(hostile_grpc_calls(random.Random(7), png)):
            try:
                calls[method](payload, timeout=60)
                code = "OK"
            except grpc.RpcError as e:
                code = e.code().name
                assert e.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), \
                    f"call {i}: {method} {payload[:200]!r} -> {code} {e.details()}"
            grpc_codes[code] = grpc_codes.get(code, 0) + 1
            if i % 50 == 0:
                response = predict_pb2.PredictResponse.FromString(calls["Predict"](good.SerializeToString(), timeout=60))
                scores = tf.make_ndarray(response.outputs["scores"])
                good_scores = scores if good_scores is None else good_scores
                np.testing.assert_allclose(scores, good_scores, rtol=1e-5)
        channel.close()
        assert sum(rest_codes.values()) >= 2000 and sum(grpc_codes.values()) >= 500
        assert grpc_codes.get("INVALID_ARGUMENT", 0) > 150 and grpc_codes.get("NOT_FOUND", 0) > 100, grpc_codes
        with httpx.Client(base_url=server.rest, timeout=60) as http:
            assert http.get("/v1/models/tiny_text").status_code == 200        # still up
            metrics_text = http.get("/monitoring/prometheus/metrics").text
        check_metrics_bounded(metrics_text)
        assert server.proc.poll() is None
    finally:
        log = server.stop()
    assert "Traceback" not in log and "internal error" not in log, log[-3000:]
    print(f"REST {sum(rest_codes.values())} requests: {dict(sorted(rest_codes.items()))}; "
          f"gRPC {sum(grpc_codes.values())} calls: {dict(sorted(grpc_codes.items()))}")
