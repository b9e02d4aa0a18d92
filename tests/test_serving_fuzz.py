"""Fuzz the serving app: over 1,000 malformed or hostile requests, none answered 5xx, every error in
TF Serving's `{"error": ...}` shape, and good requests between them still answered correctly."""

from __future__ import annotations

import base64
import json
import random

import numpy as np
import pytest

from conftest import png_bytes

pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

N_HOSTILE = 1100


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
             "unknown_routes", "path_tricks", "bad_b64", "bad_methods"]
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
            route = rng.choice(["/", "/v1", "/v1/models", "/v1/models/", "/v2/models/tiny_text", "/v1/model/tiny_text",
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
        else:
            yield rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"]), rng.choice(paths), rng.choice(good_bodies)


def test_fuzz_hostile_requests_never_5xx(model_base):
    from starlette.testclient import TestClient
    from cnnapp.serving import BatchingParameters, ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(model_base), max_body_bytes=1_000_000,
                                      batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=100)))
    client = TestClient(serving.app)
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
    assert sum(counts.values()) >= 1000
    assert sum(n for code, n in counts.items() if 400 <= code < 500) > 900, counts
    serving.manager.stop()


def _numbers(doc) -> list[float]:
    if isinstance(doc, dict):
        return [x for k in sorted(doc) for x in _numbers(doc[k])]
    if isinstance(doc, list):
        return [x for v in doc for x in _numbers(v)]
    return [doc] if isinstance(doc, float) else []
