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

pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

N_HOSTILE = 2200
UNICODE_VERSIONS = ["%C2%B2", "%E2%91%A0", "%EF%BC%91", "%D9%A1", "%F0%9D%9F%8F", "%E0%A5%A7", "1%C2%B2",
                    "-1", "+1", "1.0", "0x1", "%201", "1%00", "9" * 30, "%FF", "%C0%AF"]


def hostile_requests(rng: random.Random, good_bodies: list[bytes]):
    """(method, path, body bytes) triples: each a kind of malformed or hostile request."""
    paths = ["/v1/models/tiny_text:predict", "/v1/models/tiny_image:predict", "/v1/models/tiny_text:classify",
             "/v1/models/tiny_image/versions/1:predict", "/v1/models/tiny_text/labels/x:predict"]
    png = base64.b64encode(png_bytes(np.zeros((8, 8, 1)))).decode()
    junk_values = [None, True, 0, -1, 1.5, 1e308, -1e308, 10 ** 30, "", "x" * 1000, [], {}, [[]], [None],
                   {"b64": 5}, {"b64": None}, {"b64": "@@@"}, {"b64": png, "x": 1}, [{"b64": png}] * 3,
                   float("nan"), {"instances": []}]
    deep = [lambda n: "[" * n + "]" * n, lambda n: '{"a":' * n + "1" + "}" * n, lambda n: "[" * n]
    trick_names = ["..", "../tiny_text", "%2e%2e", "tiny_text%00", "tiny_text/../tiny_image", "tiny_text/versions/-1",
                   "tiny_text/versions/99999999999999999999999999", "tiny_text/versions/1/versions/1",
                   "tiny_text/labels/", "tiny_text:predict:predict", "%252e%252e%252f", "ti ny", "ünï", "a" * 3000,
                   "tiny_text/metadata/metadata", "tiny_text:", ":predict", "tiny_text;predict", "*", "%ff%fe"]
    kinds = ["broken_json", "random_bytes", "wrong_types", "huge_numbers", "deep_nesting", "wrong_shapes",
             "unknown_routes", "path_tricks", "bad_b64", "bad_methods", "unicode_versions", "made_up_models",
             "huge_payloads", "wrong_dtypes"]
    for i in range(N_HOSTILE):
        kind = kinds[i % len(kinds)]
        path = rng.choice(paths)
        if kind == "broken_json":
            good = rng.choice(good_bodies)
            cut = rng.randrange(0, len(good))
            body = good[:cut] + bytes(rng.choice(b'{}[]",:\\\x00') for _ in range(rng.randrange(0, 3)))
            yield "POST", path, body
        elif kind == "random_bytes":
            yield "POST", path, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        elif kind == "wrong_types":
            key = rng.choice(["instances", "inputs", "examples", "signature_name", "context"])
            value = rng.choice(junk_values)
            value = value if rng.random() < 0.5 else [value] * rng.randrange(1, 4)
            yield "POST", path, json.dumps({key: value}).encode()
        elif kind == "huge_numbers":
            number = rng.choice(["1e400", "-1e400", "9" * rng.randrange(20, 5000), "-" + "9" * 40, "1e-400",
                                 "123456789012345678901234567890.5", "NaN", "Infinity"])
            sig = rng.choice(["serving_pixels", "serving_token_ids", "serving_default"])
            shape_body = {"serving_pixels": "[[[[%s]]]]", "serving_token_ids": "[[%s,1,1,1,1,1,1,1,1,1,1,1]]",
                          "serving_default": "[%s]"}[sig] % number
            yield "POST", rng.choice(paths[:2]), f'{{"signature_name":"{sig}","inputs":{shape_body}}}'.encode()
        elif kind == "deep_nesting":
            n = rng.choice([50, 500, 5000, 50_000, 200_000])
            yield "POST", path, ('{"instances":' + rng.choice(deep)(n) + "}").encode()
        elif kind == "wrong_shapes":
            sig = rng.choice(["serving_pixels", "serving_token_ids"])
            dims = [rng.randrange(0, 4) for _ in range(rng.randrange(0, 6))]
            value = np.zeros(dims).tolist() if dims else 0
            if rng.random() < 0.3 and isinstance(value, list) and value:
                value.append([1, 2, 3])       # ragged
            yield "POST", rng.choice(paths[:2]), json.dumps({"signature_name": sig,
                                                             rng.choice(["instances", "inputs"]): value}).encode()
        elif kind == "unknown_routes":
            route = rng.choice(["/nope", "/v1", "/v1/models", "/v1/models/", "/v2/models/tiny_text", "/v1/model/tiny_text",
                                "/v1/models/tiny_text:predictx", "/v1/models/tiny_text/:predict",
                                "/v1/models/tiny_text/versions", "/monitoring/prometheus", "/v1/models/tiny_text:regress",
                                "/v1/models/tiny_text/metadata:predict"])
            yield rng.choice(["GET", "POST"]), route, rng.choice(good_bodies)
        elif kind == "path_tricks":
            name = rng.choice(trick_names)
            yield rng.choice(["GET", "POST"]), f"/v1/models/{name}" + rng.choice(["", ":predict", "/metadata"]), \
                rng.choice(good_bodies)
        elif kind == "bad_b64":
            blob = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
            b64 = base64.b64encode(blob).decode()
            if rng.random() < 0.5:
                b64 = b64[: rng.randrange(0, len(b64) + 1)] + rng.choice(["", "=", "!", "\u00e9"])
            yield "POST", "/v1/models/tiny_image:predict", json.dumps({"instances": [{"b64": b64}]}).encode()
        elif kind == "unicode_versions":
            model = rng.choice(["tiny_text", "tiny_image"])
            suffix = rng.choice(["", "/metadata", ":predict", ":classify"])
            yield ("POST" if suffix.startswith(":") else "GET"), \
                f"/v1/models/{model}/versions/{rng.choice(UNICODE_VERSIONS)}{suffix}", rng.choice(good_bodies)
        elif kind == "made_up_models":
            name = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789_-.") for _ in range(rng.randrange(1, 24)))
            suffix = rng.choice(["", "/metadata", ":predict", ":classify", "/versions/1", "/labels/stable:predict"])
            yield ("POST" if ":" in suffix else "GET"), f"/v1/models/m{name}{suffix}", rng.choice(good_bodies)
        elif kind == "huge_payloads":
            n = rng.choice([10_001, 30_000, 120_000])
            if rng.random() < 0.5:
                body = b'{"instances":[' + b'"",' * (n - 1) + b'""]}'
            else:
                body = b'{"inputs":{"sentences":[' + b'"x",' * (n - 1) + b'"x"]}}'
            yield "POST", "/v1/models/tiny_text:predict", body
        elif kind == "wrong_dtypes":
            sig, value = rng.choice([("serving_pixels", [[[["a"]] * 8] * 8]), ("serving_pixels", [[[[True]] * 8] * 8]),
                                     ("serving_token_ids", [[1.5] * 12]), ("serving_token_ids", [["1"] * 12]),
                                     ("serving_default", [1.5]), ("serving_default", [{"b64": 1}]),
                                     ("serving_token_ids", [[None] * 12])])
            model = "tiny_image" if sig == "serving_pixels" or (sig == "serving_default" and rng.random() < 0.5) \
                else "tiny_text"
            yield "POST", f"/v1/models/{model}:predict", json.dumps({"signature_name": sig, "instances": value}).encode()
        else:
            yield rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"]), rng.choice(paths), rng.choice(good_bodies)


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

N_GRPC = 600


def hostile_grpc_calls(rng: random.Random, png: bytes):
    """(method name, request bytes) pairs: serialized requests of each hostile kind, and raw junk."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                         predict_pb2, regression_pb2)

    def spec(msg, name=None):
        msg.model_spec.name = name if name is not None else rng.choice(["tiny_text", "tiny_image"])
        roll = rng.random()
        if roll < 0.15:
            msg.model_spec.version.value = rng.choice([-1, 0, 2, 7, 2 ** 62, -(2 ** 63)])
        elif roll < 0.25:
            msg.model_spec.version_label = rng.choice(["stable", "", "²", "１", "x" * 500])
        if rng.random() < 0.1:
            msg.model_spec.signature_name = rng.choice(["nope", "serving_pixels", "serving_token_ids", "²"])
        return msg

    def tensor(kind):
        if kind == "float_for_string":
            return tf.make_tensor_proto([1.5, 2.5], dtype=tf.float32)
        if kind == "string_for_pixels":
            return tf.make_tensor_proto([[[["a"]]]])
        if kind == "huge_dims":
            t = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
            t.tensor_shape.dim.add(size=rng.choice([10 ** 12, 2 ** 40, 10_001]))
            t.string_val.append(b"x")
            return t
        if kind == "huge_float_dims":
            t = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT)
            for size in (1, 10 ** 5, 10 ** 5, 1):
                t.tensor_shape.dim.add(size=size)
            t.float_val.append(0.0)
            return t
        if kind == "negative_dim":
            t = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
            t.tensor_shape.dim.add(size=-1)
            return t
        if kind == "unknown_rank":
            t = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
            t.tensor_shape.unknown_rank = True
            return t
        if kind == "bad_content":
            t = tf.make_tensor_proto(np.zeros((1, 8, 8, 1), np.float32))
            t.tensor_content = t.tensor_content[: rng.randrange(0, len(t.tensor_content))]
            return t
        if kind == "bad_dtype_enum":
            t = tensor_pb2.TensorProto(dtype=rng.choice([0, 99, 1000]))
            t.tensor_shape.dim.add(size=1)
            return t
        if kind == "count_mismatch":
            t = tf.make_tensor_proto(["a", "b", "c"])
            t.tensor_shape.dim[0].size = 5
            return t
        if kind == "bad_png":
            return tf.make_tensor_proto([bytes(rng.randrange(256) for _ in range(rng.randrange(0, 40)))])
        return tf.make_tensor_proto(["x"] * rng.randrange(1, 4))

    kinds = ["made_up_model", "wrong_tensor", "wrong_keys", "random_bytes", "classify", "metadata", "status",
             "regress", "empty"]
    tensor_kinds = ["float_for_string", "string_for_pixels", "huge_dims", "huge_float_dims", "negative_dim",
                    "unknown_rank", "bad_content", "bad_dtype_enum", "count_mismatch", "bad_png"]
    for i in range(N_GRPC):
        kind = kinds[i % len(kinds)]
        if kind == "made_up_model":
            name = rng.choice(["nope", "²", "..", "../tiny_text", "tiny_text/1", "", "x" * 3000,
                               "m" + str(rng.randrange(10 ** 9))])
            req = spec(predict_pb2.PredictRequest(), name)
            req.inputs["sentences"].CopyFrom(tensor("ok"))
            yield "Predict", req.SerializeToString()
        elif kind == "wrong_tensor":
            req = spec(predict_pb2.PredictRequest())
            key = {"tiny_text": "sentences", "tiny_image": "image_bytes"}[req.model_spec.name]
            if req.model_spec.signature_name == "serving_pixels":
                key = "pixels"
            req.inputs[key].CopyFrom(tensor(rng.choice(tensor_kinds)))
            yield "Predict", req.SerializeToString()
        elif kind == "wrong_keys":
            req = spec(predict_pb2.PredictRequest())
            for key in rng.sample(["sentences", "image_bytes", "pixels", "token_ids", "x", ""], rng.randrange(0, 3)):
                req.inputs[key].CopyFrom(tensor("ok"))
            req.output_filter.extend(rng.sample(["scores", "classes", "nope"], rng.randrange(0, 2)))
            yield "Predict", req.SerializeToString()
        elif kind == "random_bytes":
            yield rng.choice(["Predict", "Classify", "GetModelMetadata", "GetModelStatus", "Regress"]), \
                bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
        elif kind == "classify":
            req = spec(classification_pb2.ClassificationRequest())
            for _ in range(rng.randrange(0, 3)):
                ex = req.input.example_list.examples.add()
                feature = ex.features.feature[rng.choice(["sentences", "image_bytes", "x"])]
                roll = rng.random()
                if roll < 0.3:
                    feature.float_list.value.extend([1.0, 2.0])
                elif roll < 0.6:
                    feature.bytes_list.value.extend([b"a", b"b"][: rng.randrange(0, 3)])
                elif roll < 0.8:
                    feature.bytes_list.value.append(bytes(rng.randrange(256) for _ in range(10)))
            yield "Classify", req.SerializeToString()
        elif kind == "metadata":
            req = spec(get_model_metadata_pb2.GetModelMetadataRequest())
            req.metadata_field.extend(rng.sample(["signature_def", "nope", ""], rng.randrange(0, 3)))
            yield "GetModelMetadata", req.SerializeToString()
        elif kind == "status":
            req = spec(get_model_status_pb2.GetModelStatusRequest(),
                       rng.choice(["tiny_text", "nope", "", "²", "m" + str(rng.randrange(10 ** 9))]))
            yield "GetModelStatus", req.SerializeToString()
        elif kind == "regress":
            yield "Regress", spec(regression_pb2.RegressionRequest()).SerializeToString()
        else:
            yield rng.choice(["Predict", "Classify", "GetModelMetadata", "GetModelStatus"]), b""


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
