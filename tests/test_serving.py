"""`cnnapp serve`: TF Serving's documented REST requests and responses against the in-process app,
version policy and hot switching, batching, metrics, and one real server over loopback.

The request/response shapes follow tensorflow/serving g3doc/api/api_rest.md.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import export_tiny_image_model, png_bytes, run_cli

httpx = pytest.importorskip("httpx")
# starlette 1.x suggests httpx2 for its TestClient; httpx (the dev extra) works the same here.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

IMAGE_CLASSES = ["zero", "one", "two"]
TEXT_CLASSES = ["negative", "positive"]


def b64_png(seed: int = 0) -> str:
    pixels = np.random.default_rng(seed).integers(0, 255, (8, 8, 1))
    return base64.b64encode(png_bytes(pixels)).decode()


def make_client(base: Path, **config):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(base), **config))
    # localhost: the app answers loopback Host names only by default (TestClient's is "testserver")
    return serving, TestClient(serving.app, base_url="http://localhost")


@pytest.fixture(scope="module")
def served(model_base):
    return make_client(model_base)


@pytest.fixture(scope="module")
def client(served):
    return served[1]


def assert_error(response, status: int, *fragments: str):
    body = response.json()
    assert response.status_code == status, f"{response.status_code} {body}"
    assert list(body) == ["error"] and isinstance(body["error"], str), body
    for fragment in fragments:
        assert fragment in body["error"], body


# ---------------------------------------------------------------------------- status and metadata

def test_status_matches_tf_serving(client):
    expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                          "status": {"error_code": "OK", "error_message": ""}}]}
    assert client.get("/v1/models/tiny_image").json() == expected
    assert client.get("/v1/models/tiny_text/versions/1").json() == expected


def test_metadata_lists_signature_defs(client):
    body = client.get("/v1/models/tiny_image/metadata").json()
    assert body["model_spec"] == {"name": "tiny_image", "signature_name": "", "version": "1"}
    assert "@type" not in body["metadata"]["signature_def"]     # TF Serving's REST answer has none
    defs = body["metadata"]["signature_def"]["signature_def"]
    assert set(defs) == {"__saved_model_init_op", "serving_default", "serving_pixels", "explain"}  # explain: test_explain*
    inp = defs["serving_default"]["inputs"]["image_bytes"]
    assert inp["dtype"] == "DT_STRING" and inp["tensor_shape"]["dim"] == [{"size": "-1", "name": ""}]
    outs = defs["serving_default"]["outputs"]
    assert outs["scores"]["dtype"] == "DT_FLOAT" and outs["classes"]["dtype"] == "DT_STRING"
    assert [d["size"] for d in outs["scores"]["tensor_shape"]["dim"]] == ["-1", "3"]
    assert defs["serving_pixels"]["inputs"]["pixels"]["dtype"] == "DT_FLOAT"
    text = client.get("/v1/models/tiny_text/versions/1/metadata").json()["metadata"]["signature_def"]["signature_def"]
    assert set(text) == {"__saved_model_init_op", "serving_default", "serving_token_ids", "explain"}
    assert text["serving_token_ids"]["inputs"]["token_ids"]["dtype"] == "DT_INT64"


def _tensor_info_json(info) -> dict:
    """One TensorInfo as TF Serving's REST metadata writes it (the layout of its golden file
    servables/tensorflow/testdata/saved_model_half_plus_two_2_versions_metadata.json)."""
    from tensorflow.core.framework import types_pb2
    return {"dtype": types_pb2.DataType.Name(info.dtype), "name": info.name,
            "tensor_shape": {"dim": [{"size": str(d.size), "name": d.name} for d in info.tensor_shape.dim],
                             "unknown_rank": info.tensor_shape.unknown_rank}}


# Every key path of TF Serving's golden metadata answer (signature and tensor names generalised).
GOLDEN_KEY_PATHS = {
    "model_spec", "model_spec/name", "model_spec/signature_name", "model_spec/version",
    "metadata", "metadata/signature_def", "metadata/signature_def/signature_def",
    "metadata/signature_def/signature_def/SIG", "metadata/signature_def/signature_def/SIG/defaults",
    "metadata/signature_def/signature_def/SIG/method_name",
    *(f"metadata/signature_def/signature_def/SIG/{side}{rest}" for side in ("inputs", "outputs")
      for rest in ("", "/T", "/T/dtype", "/T/name", "/T/tensor_shape", "/T/tensor_shape/dim",
                   "/T/tensor_shape/dim[]/name", "/T/tensor_shape/dim[]/size", "/T/tensor_shape/unknown_rank")),
}


def _key_paths(value, prefix="") -> set[str]:
    paths = set()
    if isinstance(value, dict):
        for key, child in value.items():
            if prefix == "metadata/signature_def/signature_def":
                key = "SIG"
            elif prefix.endswith(("/inputs", "/outputs")):
                key = "T"
            path = f"{prefix}/{key}" if prefix else key
            paths |= {path} | _key_paths(child, path)
    elif isinstance(value, list):
        for child in value:
            paths |= _key_paths(child, prefix + "[]")
    return paths


@pytest.mark.parametrize("model", ["tiny_image", "tiny_text"])
def test_metadata_is_what_the_saved_model_file_says(client, model_base, model):
    """The metadata answer equals, key for key, the SignatureDefMap read independently from
    saved_model.pb (TF's own proto classes), written out in TF Serving's layout: no `@type`, every
    signature with its method_name, defaults, and each tensor's name, dtype and shape."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((model_base / model / "1" / "saved_model.pb").read_bytes())
    [graph] = saved_model.meta_graphs
    answer = client.get(f"/v1/models/{model}/metadata").json()
    expected = {name: {"inputs": {k: _tensor_info_json(v) for k, v in sig.inputs.items()},
                       "outputs": {k: _tensor_info_json(v) for k, v in sig.outputs.items()},
                       "method_name": sig.method_name, "defaults": {}}
                for name, sig in graph.signature_def.items()}
    assert answer["metadata"] == {"signature_def": {"signature_def": expected}}
    assert "__saved_model_init_op" in expected and len(expected) == 4
    assert _key_paths(answer) == GOLDEN_KEY_PATHS
    if model == "tiny_image":   # the names the issue found wrong (StatefulPartitionedCall:0 vs _1:0)
        served = answer["metadata"]["signature_def"]["signature_def"]
        names = {served["serving_pixels"]["outputs"][k]["name"] for k in ("scores", "classes")}
        assert names == {o.name for o in graph.signature_def["serving_pixels"].outputs.values()}


# ---------------------------------------------------------------------------- predict and classify

def check_rows(predictions, n, classes):
    assert len(predictions) == n
    for row in predictions:
        assert set(row) == {"scores", "classes"} and row["classes"] == classes
        assert abs(sum(row["scores"]) - 1) < 1e-4


def test_predict_row_format_b64_images(client):
    r = client.post("/v1/models/tiny_image:predict", json={"instances": [{"b64": b64_png(0)}, {"b64": b64_png(1)}]})
    assert r.status_code == 200, r.text
    assert list(r.json()) == ["predictions"]
    check_rows(r.json()["predictions"], 2, IMAGE_CLASSES)
    # Named input objects (the documented form for several inputs) answer the same.
    named = client.post("/v1/models/tiny_image:predict",
                        json={"instances": [{"image_bytes": {"b64": b64_png(0)}}, {"image_bytes": {"b64": b64_png(1)}}]})
    assert named.json() == r.json()


def test_predict_columnar_format(client):
    rows = client.post("/v1/models/tiny_text:predict", json={"instances": ["a good film", "dull and boring"]}).json()
    cols = client.post("/v1/models/tiny_text:predict", json={"inputs": ["a good film", "dull and boring"]}).json()
    named = client.post("/v1/models/tiny_text:predict", json={"inputs": {"sentences": ["a good film", "dull and boring"]}}).json()
    assert list(cols) == ["outputs"] and cols == named
    assert cols["outputs"]["classes"] == [TEXT_CLASSES, TEXT_CLASSES]
    np.testing.assert_allclose(cols["outputs"]["scores"], [p["scores"] for p in rows["predictions"]], rtol=1e-6)


def test_predict_raw_sentences_and_signature_name(client):
    r = client.post("/v1/models/tiny_text:predict", json={"signature_name": "serving_default",
                                                          "instances": ["a good film", "é ünïcode ✓"]})
    check_rows(r.json()["predictions"], 2, TEXT_CLASSES)
    # Pixels through the float signature give what the PNG of the same pixels gives.
    pixels = np.random.default_rng(3).integers(0, 255, (1, 8, 8, 1))
    by_pixels = client.post("/v1/models/tiny_image:predict",
                            json={"signature_name": "serving_pixels", "instances": pixels.tolist()}).json()
    by_png = client.post("/v1/models/tiny_image:predict",
                         json={"instances": [{"b64": base64.b64encode(png_bytes(pixels[0])).decode()}]}).json()
    np.testing.assert_allclose(by_pixels["predictions"][0]["scores"], by_png["predictions"][0]["scores"], rtol=1e-5)
    ids = client.post("/v1/models/tiny_text:predict", json={"signature_name": "serving_token_ids",
                                                            "inputs": [[2, 3, 4] + [0] * 9]})
    assert ids.status_code == 200, ids.text


def test_classify_returns_label_score_pairs(client):
    r = client.post("/v1/models/tiny_text:classify", json={"examples": [{"sentences": "a good film"}, {"sentences": "bad"}]})
    result = r.json()["results"]
    assert len(result) == 2 and [label for label, _ in result[0]] == TEXT_CLASSES
    assert abs(sum(score for _, score in result[0]) - 1) < 1e-4
    image = client.post("/v1/models/tiny_image:classify", json={"examples": [{"image_bytes": {"b64": b64_png()}}]})
    assert [label for label, _ in image.json()["results"][0]] == IMAGE_CLASSES
    # `context` features are shared by every example, as in TF Serving's classify API.
    ctx = client.post("/v1/models/tiny_text:classify", json={"context": {"sentences": "a good film"}, "examples": [{}]})
    assert ctx.json()["results"][0] == result[0]


# ---------------------------------------------------------------------------- errors

GOOD_IMAGE = {"instances": [{"b64": "iVBORw0KGgo="}]}   # a PNG signature, then nothing: undecodable

ERRORS = [
    ("get", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("post", "/v1/models/nope:predict", {"instances": ["x"]}, 404, "Servable not found for request: Latest(nope)"),
    ("post", "/v1/models/tiny_text/versions/7:predict", {"instances": ["x"]}, 404, "Specific(tiny_text, 7)"),
    ("get", "/v1/models/tiny_text/versions/7", None, 404, "version 7"),
    ("get", "/v1/models/tiny_text/labels/stable", None, 404, "label: stable"),
    ("get", "/v1/models/tiny_text/versions/abc/metadata", None, 400,
     "Malformed request: GET /v1/models/tiny_text/versions/abc/metadata"),
    ("get", "/nowhere", None, 404, "Malformed request"),
    ("post", "/v1/models/tiny_text:explode", {"instances": ["x"]}, 400, "Malformed request: POST /v1/models/tiny_text:explode"),
    ("get", "/v1/models/tiny_text:predict", None, 400, "Malformed request: GET /v1/models/tiny_text:predict"),
    ("post", "/v1/models/tiny_text:predict", b"{not json", 400, "JSON Parse error"),
    ("post", "/v1/models/tiny_text:predict", b"", 400, "JSON Parse error"),
    ("post", "/v1/models/tiny_text:predict", ["x"], 400, "is not an object"),
    ("post", "/v1/models/tiny_text:predict", {"instances": ["x"], "inputs": ["x"]}, 400, "only one of 'inputs' or 'instances'"),
    ("post", "/v1/models/tiny_text:predict", {"examples": ["x"]}, 400, "Missing 'inputs' or 'instances' key"),
    ("post", "/v1/models/tiny_text:predict", {"instances": [1, 2]}, 400, "expected a string"),
    ("post", "/v1/models/tiny_text:predict", {"instances": []}, 400, "non-empty list"),
    ("post", "/v1/models/tiny_text:predict", {"instances": [["a", "b"]]}, 400, "nested deeper than its rank 1"),
    ("post", "/v1/models/tiny_text:predict", {"instances": [{"wrong": "x"}]}, 400, "Received: ['wrong']"),
    ("post", "/v1/models/tiny_text:predict", {"signature_name": "nope", "instances": ["x"]}, 400, "'nope' not found"),
    ("post", "/v1/models/tiny_text:predict", {"signature_name": 5, "instances": ["x"]}, 400, "must be a string"),
    ("post", "/v1/models/tiny_text:predict", {"signature_name": "serving_token_ids", "inputs": [[1, 2]]}, 400,
     "dimension 1 must be 12"),
    ("post", "/v1/models/tiny_text:predict", {"signature_name": "serving_token_ids", "inputs": [[2 ** 70] * 12]}, 400,
     "out of range"),
    ("post", "/v1/models/tiny_image:predict", {"signature_name": "serving_pixels", "instances": [[[[1e300]]]]}, 400,
     "overflows float32"),
    ("post", "/v1/models/tiny_image:predict", {"signature_name": "serving_pixels", "instances": [[[1], [1, 2]]]}, 400,
     "ragged"),
    ("post", "/v1/models/tiny_image:predict", {"signature_name": "serving_pixels", "instances": [[["a"]]]}, 400,
     "expected rank 4"),
    ("post", "/v1/models/tiny_image:predict", {"instances": [{"b64": "%%%not base64"}]}, 400, "not valid base64"),
    ("post", "/v1/models/tiny_image:predict", GOOD_IMAGE, 400, "tiny_image version 1"),
    ("post", "/v1/models/tiny_image:predict", {"instances": [{"b64": base64.b64encode(b"hello").decode()}]}, 400,
     "Unknown image file format"),
    ("post", "/v1/models/tiny_image:classify", {"examples": "x"}, 400, "'examples' must be a non-empty list"),
    ("post", "/v1/models/tiny_image:regress", {"examples": [{"image_bytes": {"b64": ""}}]}, 400, "regression"),
]


@pytest.mark.parametrize("method,path,body,status,fragment", ERRORS, ids=[f"{e[3]}-{e[1]}-{i}" for i, e in enumerate(ERRORS)])
def test_errors_have_tf_serving_shape(client, method, path, body, status, fragment):
    if isinstance(body, bytes):
        response = client.request(method.upper(), path, content=body)
    else:
        response = client.request(method.upper(), path, json=body) if body is not None else client.request(method.upper(), path)
    assert_error(response, status, fragment)


def test_deep_nesting_is_400(client):
    assert_error(client.post("/v1/models/tiny_text:predict", content=b'{"instances":' + b"[" * 100_000),
                 400, "JSON Parse error")


def test_oversized_body_is_413(model_base):
    _, small = make_client(model_base, max_body_bytes=1000)
    ok = small.post("/v1/models/tiny_text:predict", json={"instances": ["short"]})
    assert ok.status_code == 200, ok.text
    assert_error(small.post("/v1/models/tiny_text:predict", json={"instances": ["x" * 2000]}), 413, "1000")

    # No Content-Length (chunked): the limit holds while reading the stream.
    def chunks():
        yield b'{"instances": ["'
        yield b"y" * 5000
        yield b'"]}'
    assert_error(small.post("/v1/models/tiny_text:predict", content=chunks()), 413, "limit of 1000")


# ---------------------------------------------------------------------------- versions

@pytest.fixture
def versioned_base(model_base, tmp_path):
    """tiny_image versions 1 and 2 (copies: the policy, not the weights, is under test)."""
    for v in ("1", "2"):
        shutil.copytree(model_base / "tiny_image" / "1", tmp_path / "tiny_image" / v)
    return tmp_path


def test_latest_version_is_served_by_default(versioned_base):
    _, c = make_client(versioned_base)
    assert [s["version"] for s in c.get("/v1/models/tiny_image").json()["model_version_status"]] == ["2"]
    assert c.get("/v1/models/tiny_image/metadata").json()["model_spec"]["version"] == "2"
    assert_error(c.get("/v1/models/tiny_image/versions/1/metadata"), 404, "Specific(tiny_image, 1)")


def test_config_file_specific_versions_and_labels(versioned_base):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app, load_model_config_file
    path = versioned_base / "models.config"
    path.write_text(f"""
        # TF Serving's model_config_list text format, as given to --model_config_file
        model_config_list {{
          config {{
            name: 'tiny_image'
            base_path: "{versioned_base / 'tiny_image'}"
            model_platform: "tensorflow"
            model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}
            version_labels {{ key: 'stable' value: 1 }}
            version_labels {{ key: 'canary' value: 2 }}
          }}
        }}""")
    models = load_model_config_file(path)
    assert models[0].policy.versions == (1, 2) and dict(models[0].labels) == {"stable": 1, "canary": 2}
    c = TestClient(create_app(ServerConfig(models=models)).app, base_url="http://localhost")
    assert [s["version"] for s in c.get("/v1/models/tiny_image").json()["model_version_status"]] == ["1", "2"]
    assert c.get("/v1/models/tiny_image/labels/stable/metadata").json()["model_spec"]["version"] == "1"
    assert c.get("/v1/models/tiny_image/labels/canary").json()["model_version_status"][0]["version"] == "2"
    r = c.post("/v1/models/tiny_image/labels/stable:predict", json={"instances": [{"b64": b64_png()}]})
    assert r.status_code == 200, r.text
    assert_error(c.get("/v1/models/tiny_image/labels/beta"), 404, "label: beta")


def test_config_file_errors_name_the_problem(tmp_path):
    from cnnapp.errors import CnnappError
    from cnnapp.serving import load_model_config_file
    bad = tmp_path / "bad.config"
    bad.write_text("model_config_list { config { name: 'x' base_path: '/m' }")
    with pytest.raises(CnnappError, match="never closed"):
        load_model_config_file(bad)
    bad.write_text("model_config_list { config { name: '../x' base_path: '/m' } }")
    with pytest.raises(CnnappError, match=r"Received: '\.\./x'"):
        load_model_config_file(bad)


def test_failed_version_is_reported_and_previous_keeps_serving(versioned_base):
    serving, c = make_client(versioned_base)
    broken = versioned_base / "tiny_image" / "3"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"this is not a SavedModel")
    serving.manager.poll()
    status = {s["version"]: s for s in c.get("/v1/models/tiny_image").json()["model_version_status"]}
    assert status["2"]["state"] == "AVAILABLE"
    assert status["3"]["state"] == "END" and status["3"]["status"]["error_code"] != "OK"
    assert str(broken) in status["3"]["status"]["error_message"]
    r = c.post("/v1/models/tiny_image:predict", json={"instances": [{"b64": b64_png()}]})
    assert r.status_code == 200, r.text
    assert c.get("/v1/models/tiny_image/metadata").json()["model_spec"]["version"] == "2"


def test_version_switch_under_load_drops_no_request(model_base, tmp_path):
    """Requests keep flowing while version 2 (other class names) is loaded, warmed and switched in."""
    from cnnapp.serving import BatchingParameters, ServerConfig, create_app, discover_models
    base, staging = tmp_path / "base", tmp_path / "staging"
    shutil.copytree(model_base / "tiny_image" / "1", base / "tiny_image" / "1")
    export_tiny_image_model(staging, class_names=("cat", "dog", "eel"), version=2)
    serving = create_app(ServerConfig(models=discover_models(base),
                                      batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=500)))
    body = {"instances": [{"b64": b64_png()}]}
    seen: list[tuple[int, list]] = []

    async def main():
        transport = httpx.ASGITransport(app=serving.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            switched = asyncio.Event()
            after_switch = 0

            async def worker():
                nonlocal after_switch
                while after_switch < 40:
                    r = await http.post("/v1/models/tiny_image:predict", json=body)
                    seen.append((r.status_code, r.json().get("predictions", [{}])[0].get("classes")))
                    if switched.is_set():
                        after_switch += 1

            async def switch():
                while len(seen) < 20:       # let load build up first
                    await asyncio.sleep(0)
                os.rename(staging / "tiny_image" / "2", base / "tiny_image" / "2")   # atomic, as export does
                await asyncio.to_thread(serving.manager.poll)
                switched.set()

            await asyncio.gather(switch(), *[worker() for _ in range(8)])

    asyncio.run(main())
    failed = [s for s in seen if s[0] != 200]
    assert not failed, failed[:5]
    classes = [c for _, c in seen]
    assert classes[0] == IMAGE_CLASSES and classes[-1] == ["cat", "dog", "eel"]
    assert set(map(tuple, classes)) == {tuple(IMAGE_CLASSES), ("cat", "dog", "eel")}
    status = serving.manager.status("tiny_image")["model_version_status"]
    assert [(s["version"], s["state"]) for s in status] == [("1", "END"), ("2", "AVAILABLE")]
    serving.manager.stop()


# ---------------------------------------------------------------------------- batching and metrics

def _batch_sizes(metrics_text: str, model: str) -> dict[str, int]:
    prefix = f':tensorflow:serving:batching_session:processed_batch_size_bucket{{model_name="{model}",le="'
    return {line[len(prefix):].split('"')[0]: int(line.rsplit(" ", 1)[1])
            for line in metrics_text.splitlines() if line.startswith(prefix)}


def test_batching_merges_concurrent_requests_and_splits_results(model_base, served):
    from cnnapp.serving import BatchingParameters, ServerConfig, create_app, discover_models
    # A long timeout makes the batch close only when full: exactly one call of 8, no timing luck.
    serving = create_app(ServerConfig(models=discover_models(model_base, "tiny_text"),
                                      batching=BatchingParameters(max_batch_size=8, batch_timeout_micros=30_000_000)))
    sentences = [f"a good film number {i}" if i % 2 else "dull and boring " * i for i in range(8)]

    async def main():
        transport = httpx.ASGITransport(app=serving.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return await asyncio.gather(*[http.post("/v1/models/tiny_text:predict", json={"instances": [s]})
                                          for s in sentences])

    responses = asyncio.run(main())
    unbatched = served[1].post("/v1/models/tiny_text:predict", json={"instances": sentences}).json()["predictions"]
    for r, expected in zip(responses, unbatched):
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(r.json()["predictions"][0]["scores"], expected["scores"], rtol=1e-5)
    sizes = _batch_sizes(serving.metrics.render(), "tiny_text")
    assert sizes["4"] == 0 and sizes["8"] == 1 and sizes["+Inf"] == 1, sizes
    serving.manager.stop()


def test_one_bad_request_in_a_batch_fails_alone(model_base):
    from cnnapp.serving import BatchingParameters, ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(model_base, "tiny_image"),
                                      batching=BatchingParameters(max_batch_size=4, batch_timeout_micros=30_000_000)))
    bodies = [{"instances": [{"b64": b64_png(i)}]} for i in range(3)] + [GOOD_IMAGE]

    async def main():
        transport = httpx.ASGITransport(app=serving.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
            return await asyncio.gather(*[http.post("/v1/models/tiny_image:predict", json=b) for b in bodies])

    codes = [r.status_code for r in asyncio.run(main())]
    assert codes == [200, 200, 200, 400]
    serving.manager.stop()


def test_prometheus_metrics(client):
    client.post("/v1/models/tiny_text:predict", json={"instances": ["a good film"]})
    client.get("/v1/models/nope")
    r = client.get("/monitoring/prometheus/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "# TYPE :tensorflow:serving:request_count counter" in text
    assert ':tensorflow:serving:request_count{API="Predict",entrypoint="REST",model_name="tiny_text",status="200"}' in text
    # A made-up model name shares one label value: requests cannot grow the series without bound.
    assert ':tensorflow:serving:request_error_count{API="GetModelStatus",entrypoint="REST",model_name="(unknown)",status="404"}' in text
    assert 'model_name="nope"' not in text
    assert ':tensorflow:serving:request_latency_bucket{API="Predict",entrypoint="REST",model_name="tiny_text",le="+Inf"}' in text


# ---------------------------------------------------------------------------- CLI and the real socket

def test_cli_serve_reports_bad_base_path(tmp_path):
    result = run_cli(["serve", "--model-base-path", tmp_path / "missing"], expect_exit=1)
    assert "--model_base_path: no such folder" in result.output and "missing" in result.output
    assert "Traceback" not in result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_server_over_loopback(model_base):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cnnapp", "serve", "--model-base-path", str(model_base),
                             "--port", "0", "--rest_api_port", str(port), "--enable-batching",
                             "--file-system-poll-wait-seconds", "0"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = []
    try:
        # Block on the server's own log until uvicorn says it listens (it logs that after the
        # lifespan startup loaded the models); EOF means the server died, and its log says why.
        for line in proc.stderr:
            lines.append(line)
            if "Uvicorn running on" in line:
                break
        assert proc.poll() is None, "".join(lines)[-2000:]
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/v1/models/tiny_text", timeout=30).status_code == 200
        r = httpx.post(f"{url}/v1/models/tiny_image:predict", json={"instances": [{"b64": b64_png()}]}, timeout=30)
        assert r.status_code == 200, r.text
        check_rows(r.json()["predictions"], 1, IMAGE_CLASSES)
        r = httpx.post(f"{url}/v1/models/tiny_text:predict", content=b"{broken", timeout=30)
        assert r.status_code == 400 and list(r.json()) == ["error"]
    finally:
        proc.terminate()
        _, rest = proc.communicate(timeout=30)
    log_text = "".join(lines) + rest
    assert "serving tiny_image version 1" in log_text and f"127.0.0.1:{port}" in log_text


def test_serving_and_inference_import_only_exported_models():
    """cnnapp/serving and cnnapp/inference load SavedModels; they never import the code that built them."""
    import ast
    root = Path(__file__).resolve().parents[1] / "cnnapp"
    forbidden = ("cnnapp.training", "cnnapp.models", "cnnapp.pipelines", "cnnapp.preprocessing")
    offenders = []
    for package in ("serving", "inference"):
        for path in sorted((root / package).glob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                offenders += [f"{path.name}: {n}" for n in names if n.startswith(forbidden)]
    assert not offenders, offenders


# ---------------------------------------------------------------------------- TF Serving's exact text

def tf_serving_decimal(value: float) -> str:
    """TF Serving's WriteDecimal for a DT_FLOAT (util/json_tensor.cc), by printf itself: `%g` when it
    reads back as the same float32, else `%.9g`; '.0' added to a plain whole number."""
    value = float(np.float32(value))
    text = "%g" % value
    if np.float32(float(text)) != np.float32(value):
        text = "%.9g" % value
    return text + ".0" if "." not in text and "e" not in text else text


def test_float_outputs_have_tf_serving_digits():
    """Every float32 (edge cases, then random magnitudes and random bit patterns) prints as TF
    Serving prints it, character for character below 1e6 (above, the same number without exponent)."""
    import json
    from cnnapp.serving.json_floats import tf_serving_float32
    rng = np.random.default_rng(7)
    edge = [0.934780419, 0.9347804188728333, 0.5, 1.0, 0.1, 0.2, 1e-5, 1e-4, 1e-14, 9.99999e-15, 999999.7,
            1234565.0, 2e6, 9e6, 1e38, 3.4e38, 1.4e-45, 0.0, -0.0, -0.25, 0.123456791]
    bits = rng.integers(0, 2 ** 32, 20_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([np.array(edge, np.float32), rng.random(20_000).astype(np.float32),
                             (rng.random(20_000) * 10.0 ** rng.integers(-20, 10, 20_000)).astype(np.float32),
                             bits[np.isfinite(bits)]])
    for batch in (values, values[:5]):             # the vectorised path and the value-by-value one
        printed = tf_serving_float32(batch)
        assert printed.dtype == np.float64 and printed.shape == batch.shape
        for got, v in zip(printed.tolist(), batch.tolist()):
            want = tf_serving_decimal(v)
            assert got == float(want), (v, got, want)
            if abs(v) < 1e6:
                assert json.dumps(got) == want, (v, json.dumps(got), want)
    nan_inf = tf_serving_float32(np.array([np.nan, np.inf, -np.inf], np.float32))
    assert json.dumps(nan_inf.tolist()) == "[NaN, Infinity, -Infinity]"     # TF Serving's spellings


def test_predict_and_classify_print_scores_as_tf_serving(client):
    import json
    import re
    r = client.post("/v1/models/tiny_text:predict", json={"instances": ["a good film", "dull and boring"] * 40})
    scores = [s for p in r.json()["predictions"] for s in p["scores"]]
    printed = re.findall(r'"scores":\[([^\]]*)\]', r.text)
    assert len(printed) == 80 and len(scores) == 160
    assert ",".join(printed).split(",") == [tf_serving_decimal(s) for s in scores]   # digits of the float32
    assert max(len(t.replace("0.", "").lstrip("0")) for t in ",".join(printed).split(",")) <= 9
    c = client.post("/v1/models/tiny_text:classify", json={"examples": [{"sentences": "a good film"}]})
    label_scores = re.findall(r'\["(?:negative|positive)",([^\]]*)\]', c.text)
    assert label_scores == [tf_serving_decimal(s) for _, s in c.json()["results"][0]]
    assert json.loads(r.text) == r.json()


@pytest.mark.parametrize("path,fragment", [
    ("/v1/models/tiny_text/versions/1%0a", "Malformed request: GET /v1/models/tiny_text/versions/1\n"),
    ("/v1/models/tiny_text/versions/1%0a/metadata", "Malformed request"),
    ("/v1/models/tiny_text/versions/+1", "Malformed request"),
    ("/v1/models/tiny_text/versions/1.0", "Malformed request"),
    ("/v1/models/tiny_text/versions/%201", "Malformed request"),
    ("/v1/models/tiny_text/versions/99999999999999999999", "Failed to convert version: 99999999999999999999 to numeric."),
    ("/v1/models/tiny_text/versions/1/labels/x", "Malformed request"),
    ("/v1/models/tiny_text/metadata/x", "Malformed request"),
    ("/v1/foo", "Malformed request: GET /v1/foo"),
])
def test_versions_and_paths_are_parsed_exactly(client, path, fragment):
    """Versions are ASCII digits and nothing else, matched whole (TF Serving's (\\d+) with FullMatch):
    400 "Malformed request: <METHOD> <path>" otherwise, never version 1."""
    assert_error(client.get(path), 400, fragment)
    if "/metadata" not in path and "/v1/foo" not in path:
        assert_error(client.post(path + ":predict", json={"instances": ["x"]}), 400)


def test_malformed_request_body_is_tf_servings(client):
    """The whole message, as TF Serving's handler writes it: "Malformed request: <METHOD> <path>"."""
    for method, path in [("POST", "/v1/models/tiny_text:foo"), ("GET", "/v1/models/tiny_text/versions/abc"),
                         ("POST", "/v1/models/tiny_text"), ("POST", "/v1/models/tiny_text/metadata"),
                         ("PUT", "/v1/models/tiny_text"), ("DELETE", "/v1/models/tiny_text:predict"),
                         ("POST", "/v1/models")]:
        r = client.request(method, path, content=b'{"instances": ["x"]}')
        assert (r.status_code, r.json()) == (400, {"error": f"Malformed request: {method} {path}"}), r.text
    assert client.get("/v1/models/tiny_text/versions/0001").json()["model_version_status"][0]["version"] == "1"


@pytest.mark.parametrize("dtype", ["float32", "int32", "uint8"])
def test_large_numeric_inputs_decode_in_bulk_exactly_as_value_by_value(dtype):
    """A body of thousands of numbers is checked and converted in bulk (a [1,2000,2000,1] pixel body was 4M
    Python calls): the same array as the value-by-value path, and the same refusals."""
    from cnnapp.serving.codec import InputSpec, ServingError, _leaf, to_array
    spec = InputSpec("x", dtype, (None, 48, 48))
    rng = np.random.default_rng(0)
    values = rng.integers(0, 200, (2, 48, 48)).tolist() if dtype != "float32" else \
        (rng.normal(size=(2, 48, 48)) * 100).tolist()
    bulk = to_array(values, spec)
    one_by_one = np.asarray([_leaf(v, spec) for row in values for line in row for v in line], spec.np_dtype)
    assert bulk.dtype == spec.np_dtype and bulk.shape == (2, 48, 48)
    np.testing.assert_array_equal(bulk.ravel(), one_by_one)
    for bad, reason in [(True, "expected a number"), ("7", "expected a number"),
                        (10**40 if dtype != "float32" else 1e300, "out of range" if dtype != "float32" else "overflows")]:
        values[1][47][47] = bad
        with pytest.raises(ServingError, match=reason):
            to_array(values, spec)
    if dtype != "float32":
        values[1][47][47] = 2.5
        with pytest.raises(ServingError, match="expected an integer"):
            to_array(values, spec)
