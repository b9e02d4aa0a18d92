"""TF Serving's JSON mapping: request bodies -> named numpy inputs, signature outputs -> JSON.

Generic over signatures: every check reads the signature's input names, dtypes and shapes, so a
model with other inputs than cnnapp's is served the same way TF Serving would serve it.
Row format (`instances`, one entry per example) and columnar format (`inputs`) are both decoded;
binary strings travel as `{"b64": "..."}` both ways.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
import math

import numpy as np

from cnnapp.serving import json_parse
from cnnapp.serving.errors import NotFound, ServingError  # noqa: F401 - re-exported
from cnnapp.serving.json_floats import _nest, tf_serving_floats


def clip(value, limit: int = 80) -> str:
    """A client's value, short enough to echo in an error message (a 1 MB model name must not
    come back in a gRPC status, whose metadata a client refuses past 8 KB)."""
    text = value[:limit + 1] if isinstance(value, str) else json.dumps(value, default=str)[:limit + 1]
    return text if len(text) <= limit else text[:limit] + "..."


_clip = clip


def decode_body(body: bytes) -> str:
    """A request body's text (UTF-8, or UTF-16/32 as json.loads detects them); ServingError if it is not text."""
    try:
        return body.decode(json.detect_encoding(body), "surrogatepass")
    except UnicodeDecodeError as e:
        raise ServingError(f"JSON Parse error: the body is not UTF-8 text ({str(e)[:120]}). "
                           f"Received: {_clip(body[:80].decode('utf-8', 'replace'))}") from None


def parse_json(body: bytes | str, *, share_gil: bool = False) -> dict:
    """`share_gil`: parse with serving/json_parse.py, which lets other threads run between elements
    (`json.loads` holds the GIL for the whole document: seconds for a 58 MB body, during which the
    event loop answers nothing, even when the parse runs in a worker thread). Slower for small
    bodies, so only for the large ones; the small ones take microseconds either way."""
    text = decode_body(body) if isinstance(body, (bytes, bytearray)) else body
    try:
        doc = json_parse.loads(text) if share_gil else json.loads(text)
    except (RecursionError, json_parse.NestingTooDeep):
        raise ServingError("JSON Parse error: nesting too deep") from None
    except ValueError as e:
        # ValueError covers syntax errors and ints past Python's digit limit
        raise ServingError(f"JSON Parse error: {str(e)[:120]}. Received: {_clip(text[:80])}") from None
    if not isinstance(doc, dict):
        raise ServingError(f"JSON Value: {_clip(doc)} is not an object (expected {{\"instances\": ...}} "
                           f"or {{\"inputs\": ...}})")
    return doc


# ---------------------------------------------------------------------------- input specs

DTYPE_NAMES = {"float32": "DT_FLOAT", "float64": "DT_DOUBLE", "float16": "DT_HALF", "int32": "DT_INT32",
               "int64": "DT_INT64", "int16": "DT_INT16", "int8": "DT_INT8", "uint8": "DT_UINT8",
               "uint16": "DT_UINT16", "bool": "DT_BOOL", "string": "DT_STRING"}


class InputSpec:
    """One signature input: name, dtype name ('float32', 'string', ...) and shape (None = any)."""

    def __init__(self, name: str, dtype: str, shape: tuple | None):
        self.name, self.dtype, self.shape = name, dtype, shape
        self.np_dtype = object if dtype == "string" else np.dtype(dtype)

    def describe(self) -> str:
        dims = "?" if self.shape is None else "[" + ",".join("-1" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name} ({DTYPE_NAMES.get(self.dtype, self.dtype)} {dims})"


def _is_b64(value) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def _flatten(value, max_depth: int, spec: InputSpec) -> tuple[list[int], list]:
    """Nested lists -> (shape, leaves), breadth first so deep nesting cannot recurse."""
    shape: list[int] = []
    level = [value]
    while level and isinstance(level[0], list):
        n = len(level[0])
        if len(shape) >= max_depth:
            raise ServingError(f"input {spec.describe()}: nested deeper than its rank {max_depth}")
        # Checked in bulk (map and set run in C: a [1,2000,2000,1] body has 4M lists), the culprit then found.
        if set(map(type, level)) != {list} or set(map(len, level)) != {n}:
            v = next(v for v in level if not isinstance(v, list) or len(v) != n)
            raise ServingError(f"input {spec.describe()}: ragged or mixed list at depth {len(shape)}: "
                               f"every list at one depth needs the same length. Received: {_clip(v)}")
        shape.append(n)
        level = list(itertools.chain.from_iterable(level))
    if any(isinstance(v, list) for v in level):
        raise ServingError(f"input {spec.describe()}: mixes lists and values at depth {len(shape)}")
    return shape, level


def _numbers(leaves: list, spec: InputSpec) -> np.ndarray | None:
    """The leaves of a numeric input as one array, checked in bulk: a [1,2000,2000,1] pixel body is 4M
    leaves, ~1 us each through `_leaf`. None when the bulk path does not apply (another dtype, or leaves
    other than plain ints and floats: bools, strings, lists, ints past int64), so `_leaf` says why."""
    if spec.dtype in ("string", "bool") or len(leaves) < 1024:
        return None
    kinds = set(map(type, leaves))
    if not kinds <= {int, float}:
        return None
    try:
        values = np.asarray(leaves, dtype=np.float64 if float in kinds else np.int64)
    except OverflowError:
        return None
    if spec.np_dtype.kind in "iu":
        if values.dtype.kind == "f":
            return None            # an integer input given floats: `_leaf` names the first non-integer
        info = np.iinfo(spec.np_dtype)
        if values.min() < info.min or values.max() > info.max:
            return None
        return values.astype(spec.np_dtype)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size and np.abs(finite).max() > float(np.finfo(spec.np_dtype).max):
        return None
    return values.astype(spec.np_dtype)


def _leaf(value, spec: InputSpec):
    if spec.dtype == "string":
        if isinstance(value, str):
            return value.encode("utf-8", "surrogatepass")
        if _is_b64(value) and isinstance(value["b64"], str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                raise ServingError(f"input {spec.describe()}: 'b64' is not valid base64. "
                                   f"Received: {_clip(value['b64'], 40)}") from None
        raise ServingError(f"input {spec.describe()}: expected a string or {{\"b64\": \"...\"}}. Received: {_clip(value)}")
    if spec.dtype == "bool":
        if isinstance(value, bool):
            return value
        raise ServingError(f"input {spec.describe()}: expected true or false. Received: {_clip(value)}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ServingError(f"input {spec.describe()}: expected a number. Received: {_clip(value)}")
    if spec.np_dtype.kind in "iu":
        if isinstance(value, float) and not value.is_integer():
            raise ServingError(f"input {spec.describe()}: expected an integer. Received: {value}")
        info = np.iinfo(spec.np_dtype)
        if not info.min <= value <= info.max:
            raise ServingError(f"input {spec.describe()}: {_clip(value, 30)} is out of range "
                               f"[{info.min}, {info.max}]")
        return int(value)
    # Compare as Python numbers: a JSON integer may be far past what a float can hold.
    if isinstance(value, int) or math.isfinite(value):
        if abs(value) > float(np.finfo(spec.np_dtype).max):
            raise ServingError(f"input {spec.describe()}: {_clip(str(value), 30)} overflows {spec.dtype}")
    return float(value)


def to_array(value, spec: InputSpec, *, batched: bool = True) -> np.ndarray:
    """A JSON value for `spec` (its batch dimension included) -> numpy array, or ServingError."""
    rank = None if spec.shape is None else len(spec.shape)
    shape, leaves = _flatten(value, rank if rank is not None else 32, spec)
    if rank is not None and len(shape) != rank:
        raise ServingError(f"input {spec.describe()}: expected rank {rank}"
                           f"{' (with the batch dimension)' if batched else ''}, got shape {shape}. "
                           f"Received: {_clip(value)}")
    if batched and shape and shape[0] == 0:
        raise ServingError(f"input {spec.describe()}: no examples (an empty batch). Received: {_clip(value)}")
    if spec.shape is not None:
        for i, (want, got) in enumerate(zip(spec.shape, shape)):
            if want is not None and want != got:
                raise ServingError(f"input {spec.describe()}: dimension {i} must be {want}, got shape {shape}")
    array = _numbers(leaves, spec)
    if array is not None:
        return array.reshape(shape)
    flat = [_leaf(v, spec) for v in leaves]
    if spec.dtype == "string":
        array = np.empty(len(flat), dtype=object)
        array[:] = flat
        return array.reshape(shape)
    return np.asarray(flat, dtype=spec.np_dtype).reshape(shape)


def check_instances(count: int, limit: int | None, what: str = "instances") -> None:
    """Refuse a request of more examples than the server takes in one request, before decoding it."""
    if limit is not None and count > limit:
        raise ServingError(f"the request holds {count} {what}, over the limit of {limit} per request "
                           f"(--max_instances_per_request); split it into smaller requests")


def decode_predict(doc: dict, specs: dict[str, InputSpec],
                   max_instances: int | None = None) -> tuple[dict[str, np.ndarray], str]:
    """A :predict body -> (inputs by name, 'row' or 'columnar')."""
    has_instances, has_inputs = "instances" in doc, "inputs" in doc
    if has_instances and has_inputs:
        raise ServingError("JSON Value: request not formatted correctly: expecting only one of 'inputs' or "
                           "'instances' keys to exist. Received both")
    if not (has_instances or has_inputs):
        raise ServingError(f"Missing 'inputs' or 'instances' key. Received keys: {sorted(doc)[:10]}")
    names = list(specs)
    if has_instances:
        rows = doc["instances"]
        if not isinstance(rows, list) or not rows:
            raise ServingError(f"'instances' must be a non-empty list, one entry per example. Received: {_clip(rows)}")
        check_instances(len(rows), max_instances)
        named = all(isinstance(r, dict) and not _is_b64(r) for r in rows)
        if len(names) > 1 and not named:
            raise ServingError(f"the signature has several inputs {names}: every instance must be an object "
                               f"with those keys. Received: {_clip(rows[0])}")
        if named:
            for r in rows:
                if set(r) != set(names):
                    raise ServingError(f"instance keys must be exactly the signature's inputs {names}. "
                                       f"Received: {sorted(r)[:10]}")
            columns = {n: [r[n] for r in rows] for n in names}
        else:
            columns = {names[0]: rows}
        return {n: to_array(columns[n], specs[n]) for n in names}, "row"
    value = doc["inputs"]
    if isinstance(value, dict) and not _is_b64(value):
        if set(value) != set(names):
            raise ServingError(f"'inputs' keys must be exactly the signature's inputs {names}. "
                               f"Received: {sorted(value)[:10]}")
        columns = value
    elif len(names) == 1:
        columns = {names[0]: value}
    else:
        raise ServingError(f"the signature has several inputs {names}: 'inputs' must be an object with those keys. "
                           f"Received: {_clip(value)}")
    for column in columns.values():
        if isinstance(column, list):
            check_instances(len(column), max_instances, "examples (first dimension of 'inputs')")
    inputs = {n: to_array(columns[n], specs[n]) for n in names}
    sizes = {a.shape[0] for a in inputs.values() if a.ndim}
    if len(sizes) > 1:
        raise ServingError(f"'inputs' disagree on the batch size (first dimension). Received sizes: {sorted(sizes)}")
    return inputs, "columnar"


def _examples_and_context(doc: dict, max_instances: int | None) -> tuple[list, dict]:
    """The `examples` list and the `context` object of a :classify/:regress body, checked."""
    examples = doc.get("examples")
    if not isinstance(examples, list) or not examples:
        raise ServingError(f"'examples' must be a non-empty list of objects. Received: {_clip(examples)}")
    check_instances(len(examples), max_instances, "examples")
    context = doc.get("context", {})
    if not isinstance(context, dict):
        raise ServingError(f"'context' must be an object. Received: {_clip(context)}")
    return examples, context


def decode_classify(doc: dict, specs: dict[str, InputSpec], max_instances: int | None = None) -> dict[str, np.ndarray]:
    """A :classify body `{"examples": [{feature: value}], "context"?: {...}}` -> inputs by name."""
    examples, context = _examples_and_context(doc, max_instances)
    rows = []
    for ex in examples:
        if not isinstance(ex, dict):
            raise ServingError(f"each example must be an object of features. Received: {_clip(ex)}")
        row = {**context, **ex}
        if set(row) != set(specs):
            raise ServingError(f"example features must be exactly the signature's inputs {list(specs)}. "
                               f"Received: {sorted(row)[:10]}")
        rows.append(row)
    return {n: to_array([r[n] for r in rows], s) for n, s in specs.items()}


def _feature(name: str, value, feature) -> None:
    """One JSON feature value (a value or a list of values) into a tf.train.Feature, as TF Serving
    fills it (util/json_tensor.cc): strings and {"b64": ...} -> bytes_list, integers -> int64_list,
    decimals -> float_list (a list with any decimal is all floats)."""
    values = value if isinstance(value, list) else [value]
    if not values or any(isinstance(v, (list, bool)) or v is None for v in values):
        raise ServingError(f"feature {_clip(name, 40)}: expected a number, a string, {{\"b64\": ...}} "
                           f"or a flat list of them. Received: {_clip(value)}")
    if all(isinstance(v, (str, dict)) for v in values):
        spec = InputSpec(name, "string", None)
        feature.bytes_list.value.extend(_leaf(v, spec) for v in values)
    elif all(isinstance(v, int) for v in values):
        feature.int64_list.value.extend(_leaf(v, InputSpec(name, "int64", None)) for v in values)
    elif all(isinstance(v, (int, float)) for v in values):
        feature.float_list.value.extend(float(v) for v in values)
    else:
        raise ServingError(f"feature {_clip(name, 40)}: mixes strings and numbers. Received: {_clip(value)}")


def decode_examples(doc: dict, max_instances: int | None = None) -> np.ndarray:
    """A :classify/:regress body for a tf.Example signature (method_name tensorflow/serving/classify or regress)
    -> the serialized tf.Examples, one per example, each with the `context` features (which must
    not appear in the examples themselves, as TF Serving requires)."""
    from tensorflow.core.example import example_pb2
    examples, context = _examples_and_context(doc, max_instances)
    serialized = np.empty(len(examples), dtype=object)
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            raise ServingError(f"each example must be an object of features. Received: {_clip(ex)}")
        both = sorted(set(ex) & set(context))
        if both:
            raise ServingError(f"feature {_clip(both[0], 40)} is in both 'context' and an example; a context "
                               f"feature must not appear in the examples")
        proto = example_pb2.Example()
        for name, value in {**context, **ex}.items():
            _feature(name, value, proto.features.feature[name])
        serialized[i] = proto.SerializeToString()
    return serialized


# ---------------------------------------------------------------------------- outputs

def _bytes_jsonable(b, as_b64: bool):
    if isinstance(b, bytes):
        if not as_b64:
            try:
                return b.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(b).decode("ascii")}
    return b


def _jsonable(array: np.ndarray, name: str):
    if array.dtype.kind in "OSa":
        as_b64 = name.endswith("_bytes")
        flat = [_bytes_jsonable(b, as_b64) for b in array.ravel().tolist()]
        return flat[0] if array.ndim == 0 else _nest(flat, array.shape)
    if array.dtype == np.float32:     # TF Serving's digits: 0.934780419, not 0.9347804188728333
        return tf_serving_floats(array)
    return array.tolist()


def encode_predict(outputs: dict[str, np.ndarray], form: str) -> dict:
    names = sorted(outputs)
    cols = {n: _jsonable(outputs[n], n) for n in names}
    if form == "columnar":
        return {"outputs": cols[names[0]] if len(names) == 1 else cols}
    if len(names) == 1:
        return {"predictions": cols[names[0]]}
    n = len(next(iter(cols.values())))
    return {"predictions": [{k: cols[k][i] for k in names} for i in range(n)]}


def classifications(outputs: dict[str, np.ndarray], signature: str = "") -> tuple[np.ndarray, list[list[str]]]:
    """(scores [batch, classes], their labels per row) for Classify (REST and gRPC), or ServingError
    when the signature has no [batch, classes] `scores` output."""
    scores = outputs.get("scores")
    if scores is None or scores.ndim != 2:
        got = "no 'scores' output" if scores is None else f"'scores' of shape {list(scores.shape)}"
        raise ServingError(f"signature {signature!r} has {got} (outputs: {sorted(outputs)}); classify needs "
                           f"[batch, classes] 'scores': use :predict / Predict")
    classes = outputs.get("classes")
    labels = [[c.decode("utf-8", "replace") if isinstance(c, bytes) else str(c) for c in classes[i]]
              if classes is not None else [str(j) for j in range(scores.shape[1])]
              for i in range(scores.shape[0])]
    return scores, labels


def encode_classify(outputs: dict[str, np.ndarray], signature: str = "") -> dict:
    scores, labels = classifications(outputs, signature)
    rows = tf_serving_floats(scores) if scores.dtype == np.float32 else scores.tolist()
    # "results": TF Serving's kClassifyRegressResponseKey (util/json_tensor.cc; api_rest.md's "result" is a typo)
    return {"results": [[[label, float(s)] for label, s in zip(row_labels, row)]
                       for row_labels, row in zip(labels, rows)]}


def regressions(outputs: dict[str, np.ndarray]) -> np.ndarray:
    """One value per example (Regress, REST and gRPC) from a regression signature's `outputs`
    tensor ([batch] or [batch, 1]), or ServingError."""
    values = outputs.get("outputs")
    if values is None or values.ndim not in (1, 2) or values.ndim == 2 and values.shape[1] != 1:
        got = "no 'outputs' tensor" if values is None else f"'outputs' of shape {list(values.shape)}"
        raise ServingError(f"a regression signature needs one value per example in 'outputs'; it has {got}")
    return values.reshape(-1)


def encode_regress(outputs: dict[str, np.ndarray]) -> dict:
    """TF Serving's :regress answer: one value per example under "results" (json_tensor.cc's
    kClassifyRegressResponseKey)."""
    values = regressions(outputs)
    return {"results": tf_serving_floats(values) if values.dtype == np.float32 else values.tolist()}
