"""`:explain` on `cnnapp serve` and the page's routes, against the in-process app (no socket)."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest

from conftest import png_bytes

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def make_client(base, **config):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(base), **config))
    return TestClient(serving.app, base_url="http://localhost")


@pytest.fixture(scope="module")
def client(model_base):
    return make_client(model_base)


def b64_png(seed=0, size=8):
    return base64.b64encode(png_bytes(np.random.default_rng(seed).integers(0, 255, (size, size, 1)))).decode()


def assert_error(response, status, *fragments):
    body = response.json()
    assert response.status_code == status, f"{response.status_code} {body}"
    assert list(body) == ["error"], body
    for fragment in fragments:
        assert fragment in body["error"], body


def test_explain_an_image_as_pngs(client):
    r = client.post("/v1/models/tiny_image:explain", json={"instances": [{"b64": b64_png()}], "max_maps": 3})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model_spec"] == {"name": "tiny_image", "signature_name": "explain", "version": "1"}
    [x] = doc["explanations"]
    assert [t["class"] for t in x["top"]] == sorted(x["classes"], key=lambda c: -x["scores"][x["classes"].index(c)])
    assert x["predicted"] == x["top"][0]["class"] and x["gradcam"]["class"] == x["predicted"]
    for picture in (x["input"], x["gradcam"]["overlay"], x["hirescam"]["overlay"]):
        assert base64.b64decode(picture["png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert [(layer["name"], layer["shape"], len(layer["maps"])) for layer in x["layers"]] == \
        [("relu1", [8, 8, 4], 3), ("relu2", [4, 4, 8], 3)]
    peaks = [m["max"] for m in x["layers"][0]["maps"]]
    assert peaks == sorted(peaks, reverse=True)                    # most active first
    assert x["filters"]["shape"] == [3, 3, 1, 4] and len(x["filters"]["tiles"]) == 4


def test_explain_a_named_class_as_arrays_per_instance(client):
    body = {"instances": [{"image_bytes": {"b64": b64_png(1)}, "class": "one"}, {"b64": b64_png(2)}],
            "class_index": 2, "images": "array", "max_maps": 1}
    r = client.post("/v1/models/tiny_image/versions/1:explain", json=body)
    assert r.status_code == 200, r.text
    first, second = r.json()["explanations"]
    assert first["gradcam"]["class"] == "one" and second["gradcam"]["class"] == "two"
    cam = np.asarray(first["gradcam"]["overlay"]["values"])
    assert cam.shape == (8, 8) and cam.min() >= 0 and cam.max() <= 1
    assert np.asarray(first["layers"][1]["maps"][0]["values"]).shape == (4, 4)


def test_explain_a_sentence(client):
    r = client.post("/v1/models/tiny_text:explain", json={"instances": ["a good film", "zork a quux film"], "top": 3})
    assert r.status_code == 200, r.text
    good, unknown = r.json()["explanations"]
    assert good["sentence"] == "a good film" and good["tokens"] == ["a", "good", "film"]
    assert len(good["token_scores"]) == 3 and abs(sum(good["probabilities"]) - 1) < 1e-5
    for g in good["ngrams"]:
        assert g["ngram"] in "a good film" and g["contribution"] > 0 and g["width"] in (2, 3)
    assert list(good) == ["sentence", "tokens", "unknown_tokens", "predicted", "predicted_index", "probabilities",
                          "classes", "top", "ngrams", "token_scores"]               # as README.md lists them
    assert good["unknown_tokens"] == 0
    assert unknown["tokens"] == ["[UNK]", "a", "[UNK]", "film"] and unknown["unknown_tokens"] == 2


@pytest.mark.parametrize("sentence", ["", "   "])
def test_explain_refuses_an_empty_sentence(client, sentence):
    assert_error(client.post("/v1/models/tiny_text:explain", json={"instances": ["a good film", sentence]}), 400,
                 "instance 1: the sentence is empty", f"Received: {sentence!r}")
    assert client.post("/v1/models/tiny_text:explain", json={"instances": ["a good film"]}).status_code == 200


@pytest.mark.parametrize("body, fragments", [
    ({"instances": [{"b64": "aGVsbG8="}]}, ["Unknown image file format", "signature 'explain'"]),
    ({"instances": [{"b64": "x"}], "class": "seven"}, ["'class' must be one of the model's classes", "'seven'"]),
    ({"instances": [{"b64": "x"}], "class_index": 3}, ["'class_index' must be an integer from -1", "Received: 3"]),
    ({"instances": [{"b64": "x"}], "images": "gif"}, ["'images' must be one of ['png', 'array']"]),
    ({"instances": [{"b64": "x"}], "max_maps": 1000}, ["'max_maps' must be an integer from 1 to 64"]),
    ({"instances": [{"b64": "x"}] * 17}, ["at most 16 instances"]),
    ({"instances": []}, ["'instances' must be a non-empty list"]),
    ({"instances": [{"b64": "x"}], "bogus": 1}, ["unknown key(s) ['bogus']"]),
    ({"instances": [{"pixels": 1}]}, ["instance 0: an object takes 'image_bytes'"]),
    ({"instances": [{"b64": "x"}], "signature_name": "serving_default"}, [":explain calls the 'explain' signature"]),
])
def test_explain_errors_have_tf_servings_shape(client, body, fragments):
    assert_error(client.post("/v1/models/tiny_image:explain", json=body), 400, *fragments)


def test_explain_errors_for_unknown_models_bodies_and_methods(client, model_base):
    assert_error(client.post("/v1/models/nope:explain", json={"instances": ["x"]}), 404,
                 "Servable not found for request: Latest(nope)")
    assert_error(client.post("/v1/models/tiny_text/versions/9:explain", json={"instances": ["x"]}), 404)
    assert_error(client.post("/v1/models/tiny_text:explain", content=b"{nope"), 400, "JSON Parse error")
    assert_error(client.get("/v1/models/tiny_text:explain"), 400, "Malformed request: GET /v1/models/tiny_text:explain")
    small = make_client(model_base, max_body_bytes=100)
    assert_error(small.post("/v1/models/tiny_image:explain", json={"instances": [{"b64": b64_png()}]}), 413,
                 "--max_body")


def test_a_model_exported_without_explain_says_so(tmp_path, model_base):
    """A version exported before the explain signature existed: 400 naming it; :predict still works."""
    import tensorflow as tf
    from cnnapp import layout
    old = tmp_path / "old" / "1"
    loaded = tf.saved_model.load(str(model_base / "tiny_image" / "1"))
    tf.saved_model.save(loaded, str(old), signatures={"serving_default": loaded.signatures["serving_default"]})
    meta = layout.read_metadata(model_base / "tiny_image" / "1")
    layout.write_metadata(old, {k: v for k, v in meta.items() if k not in ("explain", "layers")})
    client = make_client(tmp_path)
    assert_error(client.post("/v1/models/old:explain", json={"instances": [{"b64": b64_png()}]}), 400,
                 "old version 1 has no 'explain' signature", "export it again")
    assert client.post("/v1/models/old:predict", json={"instances": [{"b64": b64_png()}]}).status_code == 200
    [model] = client.get("/cnnapp/models").json()["models"]
    assert model["explain"] is False and model["layers"] == []


def test_page_files_and_model_list(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in r.text and "http" not in r.text.split("<body>")[0].replace(
        'name="viewport"', "")                                      # nothing from a CDN
    for name, kind in (("app.js", "text/javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
    assert_error(client.get("/static/..%2Fpage.py"), 404)                # never a file outside the table
    assert_error(client.get("/static/nope.js"), 404, "no such file")
    doc = client.get("/cnnapp/models").json()
    assert doc["max_body"] == 64 * 1024 * 1024
    image, text = doc["models"]
    assert (image["name"], image["kind"], image["explain"], image["image_size"]) == ("tiny_image", "image", True, [8, 8])
    assert image["class_names"] == ["zero", "one", "two"] and image["version"] == 1
    assert [r["name"] for r in image["layers"]][:3] == ["pixels", "rescale", "conv1"]
    assert text["kind"] == "text" and "explain" in text["signatures"]


def test_page_and_explain_files_ship_in_the_package():
    """The page works offline from an installed wheel: its files are package data."""
    import tomllib
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert "serving/static/*" in data["cnnapp"]
    static = root / "cnnapp" / "serving" / "static"
    assert {p.name for p in static.iterdir()} >= {"index.html", "app.js", "style.css"}
    for p in static.iterdir():
        assert "//cdn" not in p.read_text() and "https://" not in p.read_text(), p


def test_the_explain_signature_answers_tf_servings_predict(client):
    """A standard signature: TF Serving's own :predict serves it (row and columnar forms)."""
    row = {"signature_name": "explain", "instances": [{"image_bytes": {"b64": b64_png()}, "class_index": -1}]}
    r = client.post("/v1/models/tiny_image:predict", json=row)
    assert r.status_code == 200, r.text
    [p] = r.json()["predictions"]
    assert {"scores", "gradcam", "hirescam", "maps_1", "maps_2", "filters", "pixels", "class_index"} <= set(p)
    assert np.asarray(p["gradcam"]).shape == (8, 8) and np.asarray(p["filters"]).shape == (3, 3, 1, 4)
    r = client.post("/v1/models/tiny_text:predict", json={"signature_name": "explain", "inputs": ["a good film"]})
    out = r.json()["outputs"]
    assert out["tokens"][0][:3] == ["a", "good", "film"] and np.asarray(out["contribution"]).shape == (1, 8, 2)
