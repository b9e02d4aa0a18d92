"""TensorProto <-> numpy for the gRPC API, as TensorFlow (tensor.cc) and TF Serving read and write them.

Requests: every size is checked from the declared shape BEFORE anything is allocated. A proto of
a few bytes can declare a [1, 8000, 8000, 1] tensor with one `float_val`, which TensorFlow would
fill out with that value: `tensor_to_array` refuses it unless the signature and the server's caps
allow that many values, and takes a value count only when it is the shape's or exactly 1 (the
scalar broadcast `tf.constant(0.5, shape=...)` writes).

Responses: `array_to_tensor_proto` fills the typed fields (`float_val`, `int64_val`, `string_val`,
...) as TF Serving does by default (Tensor::AsProtoField), or `tensor_content` as it does with
--enable_serialization_as_tensor_content (Tensor::AsProtoTensorContent; strings then in TF's
string-list encoding: one varint32 length per string, then the bytes).

Classify: `examples_to_inputs` reads a tensorflow.serving.Input (tf.Examples, with an optional
context) into the signature's inputs.

>>> array_to_tensor_proto(np.array([[0.25, 0.75]], np.float32)).float_val
[0.25, 0.75]
"""

from __future__ import annotations

import math

import numpy as np

from cnnapp.serving.codec import InputSpec, ServingError, check_instances, clip

MAX_DIMS = 254      # TensorShape::MaxDimensions()

# The typed TensorProto field of each dtype (tensor.proto; tensor.cc's ProtoHelper).
VALUE_FIELDS = {"float32": "float_val", "float64": "double_val", "float16": "half_val", "bfloat16": "half_val",
                "int32": "int_val", "int16": "int_val", "int8": "int_val", "uint8": "int_val", "uint16": "int_val",
                "int64": "int64_val", "uint32": "uint32_val", "uint64": "uint64_val", "bool": "bool_val",
                "string": "string_val"}


# ---------------------------------------------------------------------------- requests

def _dtype_name(enum: int) -> str:
    import tensorflow as tf
    try:
        return tf.as_dtype(enum).name
    except (TypeError, ValueError):
        return f"dtype enum {enum}"


def tensor_to_array(proto, spec: InputSpec, *, max_instances: int, max_bytes: int,
                    max_free_values: int) -> np.ndarray:
    """A request TensorProto -> numpy array for `spec`, or ServingError (status 400, or 413 for a cap).

    Caps, all checked from the shape alone: the batch is at most `max_instances` examples; one
    example holds at most `max_free_values` values in the signature's free (None) dimensions (for
    a pixels input [None, None, None, C]: H*W); the decoded tensor is at most `max_bytes`, what a
    request written out in full may carry. For strings the bytes are those of the repeated value.
    """
    import tensorflow as tf
    want = tf.as_dtype(spec.dtype)
    what = f"input {spec.describe()}"
    if proto.dtype != want.as_datatype_enum:
        raise ServingError(f"{what}: expects {want.name} but {_dtype_name(proto.dtype)} is provided")
    if proto.tensor_shape.unknown_rank:
        raise ServingError(f"{what}: the tensor has no shape (unknown_rank)")
    if len(proto.tensor_shape.dim) > MAX_DIMS:
        raise ServingError(f"{what}: shape of rank {len(proto.tensor_shape.dim)}, over TensorFlow's {MAX_DIMS}")
    dims = [d.size for d in proto.tensor_shape.dim]
    shown = clip(dims)
    if any(d < 0 for d in dims):
        raise ServingError(f"{what}: negative dimension in shape {shown}")
    if spec.shape is not None:
        if len(dims) != len(spec.shape):
            raise ServingError(f"{what}: expected rank {len(spec.shape)} (with the batch dimension), got shape {shown}")
        for i, (w, g) in enumerate(zip(spec.shape, dims)):
            if w is not None and w != g:
                raise ServingError(f"{what}: dimension {i} must be {w}, got shape {shown}")
    if dims:
        if dims[0] == 0:
            raise ServingError(f"{what}: no examples (an empty batch)")
        check_instances(dims[0], max_instances, "examples (first dimension)")
    free_dims = dims[1:] if spec.shape is None else [g for w, g in zip(spec.shape[1:], dims[1:]) if w is None]
    free = math.prod(free_dims)
    if free > max_free_values:
        raise ServingError(f"{what}: shape {shown} holds {free} values per example in its free dimensions, over "
                           f"the limit of {max_free_values} (a {math.isqrt(max_free_values)}x"
                           f"{math.isqrt(max_free_values)} image)",
                           status=413)
    count = math.prod(dims)
    content = proto.tensor_content
    if content:
        if spec.dtype == "string":
            return _decode_string_list(content, dims, what)
        if len(content) != count * want.size:
            raise ServingError(f"{what}: tensor_content holds {len(content)} bytes, shape {shown} needs "
                               f"{count * want.size}")
        # The proto's own bytes, read-only: TensorFlow copies them when the signature runs.
        return np.frombuffer(content, dtype=_np_dtype(spec)).reshape(dims)
    field = VALUE_FIELDS.get(spec.dtype)
    if field is None:
        raise ServingError(f"{what}: {spec.dtype} tensors are not read from typed fields; send tensor_content")
    values = getattr(proto, field)
    given = len(values)
    # tensor.cc's FromProtoField would repeat the last value (or zero-fill) for a short list and
    # drop the extra ones of a long list: that hides client bugs (a truncated image becomes a
    # smeared one with a confident answer), so only the exact count and the scalar broadcast pass.
    if given != count and not (given == 1 and count > 1):
        raise ServingError(f"{what}: {given} values in {field} for shape {shown}, which holds {count}: send "
                           f"{count} values, or 1 to fill the shape with")
    # Strings given in full are the message's own bytes; a repeated one, or numbers (an int64 from
    # a one-byte varint), can decode to more than the message held.
    per_value = (len(values[0]) if given < count else 0) if spec.dtype == "string" else want.size
    if count * per_value > max_bytes:
        raise ServingError(f"{what}: shape {shown} with {given} value(s) decodes to {count * per_value} bytes, "
                           f"over the limit of {max_bytes} (--max_body)", status=413)
    return _typed_values(values, spec, dims, given < count)


def _np_dtype(spec: InputSpec):
    if spec.dtype == "bfloat16":
        import tensorflow as tf
        return tf.bfloat16.as_numpy_dtype
    return spec.np_dtype


def _typed_values(values, spec: InputSpec, dims: list[int], broadcast: bool) -> np.ndarray:
    if spec.dtype == "string":
        if broadcast:
            return np.full(dims, values[0], dtype=object)
        array = np.empty(len(values), dtype=object)
        array[:] = list(values)
        return array.reshape(dims)
    if spec.dtype in ("float16", "bfloat16"):
        # half_val holds the 16-bit patterns in int32s
        raw = np.asarray(values, dtype=np.int32).astype(np.uint16).view(_np_dtype(spec))
    else:
        # int_val carries int8/int16/uint8/uint16 in int32s: wrap like TensorFlow's C++ cast does
        raw = np.asarray(values, dtype=_field_dtype(spec.dtype)).astype(spec.np_dtype, copy=False)
    return np.full(dims, raw[0], dtype=raw.dtype) if broadcast else raw.reshape(dims)


def _field_dtype(dtype: str):
    return {"int8": np.int32, "int16": np.int32, "uint8": np.int32, "uint16": np.int32}.get(dtype, np.dtype(dtype))


def _read_varint32(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while pos < len(data) and shift < 35:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value & 0xFFFFFFFF, pos
        shift += 7
    raise ValueError("truncated length")


def _decode_string_list(content: bytes, dims: list[int], what: str) -> np.ndarray:
    """TF's string-list encoding (tensor_coding.cc DecodeStringList): n varint32 lengths, then the
    bytes, whose total must be exactly what is left."""
    count = math.prod(dims)
    if count > len(content):        # each length takes at least one byte: refused before allocating
        raise ServingError(f"{what}: tensor_content of {len(content)} bytes cannot hold {count} strings")
    sizes, pos = [], 0
    try:
        for _ in range(count):
            size, pos = _read_varint32(content, pos)
            sizes.append(size)
    except ValueError:
        raise ServingError(f"{what}: tensor_content is not TensorFlow's string-list encoding") from None
    if sum(sizes) != len(content) - pos:
        raise ServingError(f"{what}: tensor_content's string lengths add up to {sum(sizes)} bytes, "
                           f"{len(content) - pos} follow them")
    array = np.empty(count, dtype=object)
    for i, size in enumerate(sizes):
        array[i] = content[pos:pos + size]
        pos += size
    return array.reshape(dims)


def declared_bytes(request_inputs) -> int:
    """What a request's tensors would take decoded, from their shapes alone (to decide, before
    decoding, whether the work belongs on a worker thread): counted at 4 bytes a value."""
    total = 0
    for proto in request_inputs.values():
        total += 4 * math.prod(max(0, d.size) for d in proto.tensor_shape.dim[:MAX_DIMS + 1])
    return total


# ---------------------------------------------------------------------------- responses

def _encode_string_list(strings) -> bytes:
    lengths = bytearray()
    for s in strings:
        n = len(s)
        while n >= 0x80:
            lengths.append((n & 0x7F) | 0x80)
            n >>= 7
        lengths.append(n)
    return bytes(lengths) + b"".join(strings)


def array_to_tensor_proto(array: np.ndarray, *, as_tensor_content: bool = False):
    """A signature output -> TensorProto, typed fields (TF Serving's default) or tensor_content."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2
    array = np.asarray(array)
    is_string = array.dtype.kind in "OSU"
    dtype = tf.string if is_string else tf.as_dtype(array.dtype)
    proto = tensor_pb2.TensorProto(dtype=dtype.as_datatype_enum)
    for d in array.shape:
        proto.tensor_shape.dim.add(size=d)
    flat = array.ravel()
    if is_string:
        strings = [s if isinstance(s, bytes) else str(s).encode("utf-8") for s in flat.tolist()]
        if as_tensor_content:
            proto.tensor_content = _encode_string_list(strings)
        else:
            proto.string_val.extend(strings)
        return proto
    if as_tensor_content:
        proto.tensor_content = flat.astype(flat.dtype.newbyteorder("<"), copy=False).tobytes()
        return proto
    field = VALUE_FIELDS.get(dtype.name)
    if field is None:
        raise ServingError(f"output of dtype {dtype.name} has no typed TensorProto field here; "
                           f"serve with --enable_serialization_as_tensor_content")
    if field == "half_val":
        getattr(proto, field).extend(flat.view(np.uint16).tolist())
    else:
        getattr(proto, field).extend(flat.tolist())
    return proto


# ---------------------------------------------------------------------------- tf.Example (Classify)

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


def _examples_and_context(input_proto, max_instances: int):
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
    return examples, context


def serialized_examples(input_proto, max_instances: int) -> np.ndarray:
    """tensorflow.serving.Input -> the serialized tf.Examples a tensorflow/serving/classify or regress
    signature takes as `inputs`. With a context, each is the context's bytes then the example's, as
    TF Serving writes them (parsed as one message: the example's features win over the context's)."""
    examples, context = _examples_and_context(input_proto, max_instances)
    prefix = context.SerializeToString() if context is not None else b""
    out = np.empty(len(examples), dtype=object)
    out[:] = [prefix + ex.SerializeToString() for ex in examples]
    return out


def examples_to_inputs(input_proto, specs: dict[str, InputSpec], max_instances: int) -> dict[str, np.ndarray]:
    """tensorflow.serving.Input (tf.Examples, optional context) -> numpy inputs by signature input name."""
    examples, context = _examples_and_context(input_proto, max_instances)
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
