"""REST conformance: every example of TF Serving's g3doc/api_rest.md, against the in-process app.

The models are tiny SavedModels written here with tf.Module (no training), shaped like the ones the
page's examples assume: half_plus_three (y = 0.5x + 3, a predict signature and a
`tensorflow/serving/regress` one, as TF Serving's testdata has it), a scalar-string model, a [1, 2]
tensor model, the three-input tag/signal/sensor model, the image/caption classifier and a sensor
model for the JSON-conformance example. Each test names the api_rest.md section it checks.
"""

from __future__ import annotations

import base64
import json
import math

import pytest

from test_serving import assert_error, make_client

pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

REGRESS = "tensorflow/serving/regress"


def _set_method_names(export_dir, methods: dict[str, str]) -> None:
    """tf.saved_model.save writes every signature as a predict one; TF Serving's testdata has its
    regress signature with method_name tensorflow/serving/regress: rewrite it in saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2
    pb = export_dir / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(pb.read_bytes())
    for graph in saved_model.meta_graphs:
        for name, method in methods.items():
            graph.signature_def[name].method_name = method
    pb.write_bytes(saved_model.SerializeToString())


def _save(module, export_dir, signatures: dict, methods: dict[str, str] | None = None) -> None:
    import tensorflow as tf
    tf.saved_model.save(module, str(export_dir), signatures=signatures)
    if methods:
        _set_method_names(export_dir, methods)


def _export_models(base) -> None:
    import tensorflow as tf

    def spec(shape, dtype, name):
        return tf.TensorSpec(shape, dtype, name=name)

    class HalfPlusThree(tf.Module):
        @tf.function(input_signature=[spec([None], tf.float32, "x")])
        def predict(self, x):
            return {"y": 0.5 * x + 3.0}

        @tf.function(input_signature=[spec([None], tf.string, "inputs")])
        def regress(self, inputs):
            x = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([1], tf.float32)})["x"]
            return {"outputs": 0.5 * x + 3.0}

    m = HalfPlusThree()
    _save(m, base / "half_plus_three" / "123", {"serving_default": m.predict, REGRESS: m.regress}, {REGRESS: REGRESS})

    class Strings(tf.Module):
        @tf.function(input_signature=[spec([None], tf.string, "text")])
        def upper(self, text):
            return {"upper": tf.strings.upper(text)}

        @tf.function(input_signature=[spec([None], tf.string, "text")])
        def echo(self, text):
            return {"echo": text, "echo_bytes": tf.strings.join([text, tf.constant(b"\xff")])}

    m = Strings()
    _save(m, base / "strings" / "1", {"serving_default": m.upper, "echo": m.echo})

    class Pairs(tf.Module):
        @tf.function(input_signature=[spec([None, 1, 2], tf.float32, "pair")])
        def total(self, pair):
            return {"total": tf.reduce_sum(pair, axis=[1, 2])}

    m = Pairs()
    _save(m, base / "pairs" / "1", {"serving_default": m.total})

    class ThreeInputs(tf.Module):
        @tf.function(input_signature=[spec([None], tf.string, "tag"), spec([None, 5], tf.float32, "signal"),
                                      spec([None, 2, 2], tf.float32, "sensor")])
        def run(self, tag, signal, sensor):
            return {"tag_upper": tf.strings.upper(tag), "signal_sum": tf.reduce_sum(signal, axis=1),
                    "sensor_t": tf.transpose(sensor, [0, 2, 1])}

    m = ThreeInputs()
    _save(m, base / "three" / "1", {"serving_default": m.run})

    class ImageCaption(tf.Module):
        @tf.function(input_signature=[spec([None], tf.string, "image"), spec([None], tf.string, "caption")])
        def classify(self, image, caption):
            lengths = tf.cast(tf.stack([tf.strings.length(image), tf.strings.length(caption)], axis=1), tf.float32)
            classes = tf.tile(tf.constant([["image", "caption"]]), [tf.shape(image)[0], 1])
            return {"scores": lengths / 4.0, "classes": classes}

    m = captioner = ImageCaption()
    _save(m, base / "objects" / "1", {"serving_default": m.classify, "classify_objects": m.classify})

    class ImageCaptionExamples(tf.Module):     # TF Serving's form: a classify signature on serialized tf.Examples
        @tf.function(input_signature=[spec([None], tf.string, "inputs")])
        def classify(self, inputs):
            features = tf.io.parse_example(inputs, {"image": tf.io.FixedLenFeature([], tf.string),
                                                    "caption": tf.io.FixedLenFeature([], tf.string)})
            return captioner.classify(features["image"], features["caption"])

    m2 = ImageCaptionExamples()
    _save(m2, base / "objects_examples" / "1", {"classify_objects": m2.classify},
          {"classify_objects": "tensorflow/serving/classify"})

    class Sensors(tf.Module):
        @tf.function(input_signature=[spec([None, 4], tf.float32, "sensor_readings")])
        def echo(self, sensor_readings):
            return {"readings": sensor_readings}

        @tf.function(input_signature=[spec([None], tf.string, "inputs")])
        def finite(self, inputs):
            x = tf.io.parse_example(inputs, {"sensor_readings": tf.io.FixedLenFeature([4], tf.float32)})
            finite = tf.math.is_finite(x["sensor_readings"])
            return {"outputs": tf.reduce_sum(tf.cast(finite, tf.float32), axis=1)}

    m = Sensors()
    _save(m, base / "sensors" / "1", {"serving_default": m.echo, REGRESS: m.finite}, {REGRESS: REGRESS})


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    base = tmp_path_factory.mktemp("conformance_models")
    _export_models(base)
    serving, test_client = make_client(base)
    yield test_client
    serving.close()


def post(client, path: str, body: dict | str):
    text = body if isinstance(body, str) else json.dumps(body)
    return client.post(path, content=text.encode(), headers={"content-type": "application/json"})


def ok(response) -> dict:
    assert response.status_code == 200, f"{response.status_code} {response.text}"
    return response.json()


# ---------------------------------------------------------------------------- ## Example

def test_example_status_get(client):
    """## Example: `curl http://localhost:8501/v1/models/half_plus_three` (and ## Model status API)."""
    assert ok(client.get("/v1/models/half_plus_three")) == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert ok(client.get("/v1/models/half_plus_three/versions/123"))["model_version_status"][0]["version"] == "123"


def test_example_predict(client):
    """## Example: `{"instances": [1.0,2.0,5.0]}` -> `{"predictions": [3.5, 4.0, 5.5]}`."""
    assert ok(post(client, "/v1/models/half_plus_three:predict", {"instances": [1.0, 2.0, 5.0]})) == \
        {"predictions": [3.5, 4.0, 5.5]}
    assert ok(post(client, "/v1/models/half_plus_three/versions/123:predict", {"instances": [1.0]})) == \
        {"predictions": [3.5]}


def test_example_regress(client):
    """## Example: a regress call on the non-default `tensorflow/serving/regress` signature answers
    `{"results": [3.5, 4.0]}` (the key of TF Serving's json_tensor.cc, kClassifyRegressResponseKey)."""
    body = {"signature_name": REGRESS, "examples": [{"x": 1.0}, {"x": 2.0}]}
    assert ok(post(client, "/v1/models/half_plus_three:regress", body)) == {"results": [3.5, 4.0]}
    # "regress is available on a non-default signature name and must be specified explicitly"
    assert_error(post(client, "/v1/models/half_plus_three:regress", {"examples": [{"x": 1.0}]}), 400,
                 "tensorflow/serving/regress")


def test_example_unknown_model_is_404(client):
    """## Example: `POST /v1/models/half:predict` -> 404 `{"error": "Servable not found for request: Latest(half)"}`."""
    r = post(client, "/v1/models/half:predict", {"instances": [1.0, 5.0]})
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json() == {"error": "Servable not found for request: Latest(half)"}


# ---------------------------------------------------------------------------- ## Predict API

def test_row_format_scalar_strings(client):
    """### Specifying input tensors in row format: `"instances": ["foo", "bar", "baz"]` (3 scalars)."""
    assert ok(post(client, "/v1/models/strings:predict", {"instances": ["foo", "bar", "baz"]})) == \
        {"predictions": ["FOO", "BAR", "BAZ"]}


def test_row_format_tensors_of_shape_1_2(client):
    """### Specifying input tensors in row format: `"instances": [[[1, 2]], [[3, 4]]]` (2 tensors of [1, 2])."""
    assert ok(post(client, "/v1/models/pairs:predict", {"instances": [[[1, 2]], [[3, 4]]]})) == \
        {"predictions": [3.0, 7.0]}


ROWS = [{"tag": "foo", "signal": [1, 2, 3, 4, 5], "sensor": [[1, 2], [3, 4]]},
        {"tag": "bar", "signal": [3, 4, 1, 2, 5], "sensor": [[4, 5], [6, 8]]}]   # the page's "5]]" typo fixed
COLUMNS = {"tag": ["foo", "bar"], "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
           "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]}


def test_row_format_named_inputs_answer_list_of_objects(client):
    """### Specifying input tensors in row format (three named inputs) and ### Response format: a model
    with several named outputs answers `predictions` as a list of objects, one per instance."""
    assert ok(post(client, "/v1/models/three:predict", {"instances": ROWS})) == {"predictions": [
        {"tag_upper": "FOO", "signal_sum": 15.0, "sensor_t": [[1.0, 3.0], [2.0, 4.0]]},
        {"tag_upper": "BAR", "signal_sum": 15.0, "sensor_t": [[4.0, 6.0], [5.0, 8.0]]}]}


def test_columnar_format_answers_object(client):
    """### Specifying input tensors in column format and ### Response format: `outputs` is an object
    keyed by output name; the same values as the row request."""
    assert ok(post(client, "/v1/models/three:predict", {"inputs": COLUMNS})) == {"outputs": {
        "tag_upper": ["FOO", "BAR"], "signal_sum": [15.0, 15.0],
        "sensor_t": [[[1.0, 3.0], [2.0, 4.0]], [[4.0, 6.0], [5.0, 8.0]]]}}


def test_columnar_single_input_and_single_output(client):
    """### Response format: one named output -> `outputs` maps straight to the values; `inputs` may be
    the single input's tensor itself (### Specifying input tensors in column format)."""
    assert ok(post(client, "/v1/models/half_plus_three:predict", {"inputs": [1.0, 2.0, 5.0]})) == \
        {"outputs": [3.5, 4.0, 5.5]}
    assert ok(post(client, "/v1/models/half_plus_three:predict", {"inputs": {"x": [1.0]}})) == {"outputs": [3.5]}


def test_instances_and_inputs_together_refused(client):
    """### Request format: "A request can have either of them but NOT both"."""
    assert_error(post(client, "/v1/models/half_plus_three:predict", {"instances": [1.0], "inputs": [1.0]}), 400,
                 "instances")


def test_bytes_suffix_outputs_are_b64(client):
    """#### Output of binary values: a `_bytes`-suffixed output is `{"b64": ...}`, other strings as text."""
    body = ok(post(client, "/v1/models/strings:predict", {"signature_name": "echo", "instances": ["foo", "bar"]}))
    assert body == {"predictions": [
        {"echo": "foo", "echo_bytes": {"b64": base64.b64encode(b"foo\xff").decode()}},
        {"echo": "bar", "echo_bytes": {"b64": base64.b64encode(b"bar\xff").decode()}}]}


def test_b64_input_value(client):
    """## Encoding binary values: `{"b64": ...}` is accepted as a string tensor's value."""
    assert ok(post(client, "/v1/models/strings:predict", {"instances": [{"b64": base64.b64encode(b"qux").decode()}]})) \
        == {"predictions": ["QUX"]}


# ---------------------------------------------------------------------------- ## Classify and Regress API

CLASSIFY_EXAMPLE = {"signature_name": "classify_objects", "examples": [
    {"image": {"b64": "aW1hZ2UgYnl0ZXM="}, "caption": "seaside"},
    {"image": {"b64": "YXdlc29tZSBpbWFnZSBieXRlcw=="}, "caption": "mountains"}]}


def test_classify_example_with_b64_image_and_caption(client):
    """## Encoding binary values: the classification request with `image` (b64) and `caption`
    features; ### Response format: a list of [label, score] pairs per example, under "results" as
    TF Serving writes it (json_tensor.cc's kClassifyRegressResponseKey; the page's "result" is a typo)."""
    assert base64.b64decode("aW1hZ2UgYnl0ZXM=") == b"image bytes"       # 11 bytes; "seaside": 7 (scores: lengths / 4)
    body = ok(post(client, "/v1/models/objects:classify", CLASSIFY_EXAMPLE))
    assert body == {"results": [[["image", 2.75], ["caption", 1.75]], [["image", 4.75], ["caption", 2.25]]]}


def test_classify_example_on_a_tf_example_signature(client):
    """## Encoding binary values: the same classification request against a
    `tensorflow/serving/classify` signature that takes serialized tf.Examples, as TF Serving's
    Classify API feeds one; the same answer."""
    body = ok(post(client, "/v1/models/objects_examples:classify", CLASSIFY_EXAMPLE))
    assert body == {"results": [[["image", 2.75], ["caption", 1.75]], [["image", 4.75], ["caption", 2.25]]]}
    context = {"signature_name": "classify_objects", "context": {"caption": "seaside"},
               "examples": [{"image": {"b64": "aW1hZ2UgYnl0ZXM="}}]}
    assert ok(post(client, "/v1/models/objects_examples:classify", context)) == \
        {"results": [[["image", 2.75], ["caption", 1.75]]]}


def test_classify_context_shared_by_examples(client):
    """### Request format (Classify and Regress API): `context` features are common to all examples."""
    body = {"signature_name": "classify_objects", "context": {"caption": "seaside"},
            "examples": [{"image": {"b64": "aW1hZ2UgYnl0ZXM="}}, {"image": "abc"}]}
    assert ok(post(client, "/v1/models/objects:classify", body)) == \
        {"results": [[["image", 2.75], ["caption", 1.75]], [["image", 0.75], ["caption", 1.75]]]}


def test_regress_context_and_conflict(client):
    """### Request format (Classify and Regress API): context features reach every example, and
    "Features that appear here MUST NOT appear in examples"."""
    body = {"signature_name": REGRESS, "context": {"x": 4.0}, "examples": [{}, {}]}
    assert ok(post(client, "/v1/models/half_plus_three:regress", body)) == {"results": [5.0, 5.0]}
    body = {"signature_name": REGRESS, "context": {"x": 4.0}, "examples": [{"x": 1.0}]}
    assert_error(post(client, "/v1/models/half_plus_three:regress", body), 400, "context")


# ---------------------------------------------------------------------------- ## JSON conformance / mapping

def test_nan_and_infinity_in_predict(client):
    """## JSON conformance and ## JSON mapping (DT_FLOAT): `NaN`, `Infinity`, `-Infinity` and exponent
    notation in a request; the answer writes the same tokens."""
    r = post(client, "/v1/models/sensors:predict",
             '{"instances": [{"sensor_readings": [1.0, -3.14, NaN, Infinity]}, '
             '{"sensor_readings": [-Infinity, 2.5e2, 0, 1E-1]}]}')
    assert r.status_code == 200, r.text
    assert r.text.replace(" ", "") == \
        '{"predictions":[[1.0,-3.14,NaN,Infinity],[-Infinity,250.0,0.0,0.1]]}'
    assert math.isnan(r.json()["predictions"][0][2])
    r = post(client, "/v1/models/half_plus_three:predict", '{"instances": [NaN, Infinity, -Infinity]}')
    assert r.status_code == 200 and r.text.replace(" ", "") == '{"predictions":[NaN,Infinity,-Infinity]}'


def test_json_conformance_example_through_examples(client):
    """## JSON conformance: the page's `sensor_readings: [1.0, -3.14, NaN, Infinity]` example, sent as
    the examples of a regress request (the page's `"example"` key and `Nan` are typos of
    `"examples"` and `NaN`): two of the four readings are finite."""
    r = post(client, "/v1/models/sensors:regress",
             '{"signature_name": "%s", "examples": [{"sensor_readings": [1.0, -3.14, NaN, Infinity]}]}' % REGRESS)
    assert ok(r) == {"results": [2.0]}
    r = post(client, "/v1/models/half_plus_three:regress",
             '{"signature_name": "%s", "examples": [{"x": NaN}, {"x": Infinity}, {"x": -Infinity}]}' % REGRESS)
    assert r.status_code == 200 and r.text.replace(" ", "") == '{"results":[NaN,Infinity,-Infinity]}'


def test_error_body_shape(client):
    """Intro: "In case of error, all APIs will return a JSON object ... with `error` as key"."""
    assert_error(post(client, "/v1/models/half_plus_three:predict", "{not json"), 400, "JSON Parse error")
