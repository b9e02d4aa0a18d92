"""Hostile requests to `cnnapp serve` for the tiny_text and tiny_image models of tests/conftest.py, shared
by the fuzz test (tests/test_serving_fuzz.py) and `make fuzz` (benchmarks/fuzz_serve.py).

  hostile_requests       (method, path, body) of malformed REST requests, one kind after another
  hostile_grpc_calls     (method, serialized request) of hostile gRPC calls, and raw junk
  issue25_requests       (method, path, body, headers) of the REST cases of issue 25's probe: NaN and
                         infinity, many keys, huge strings and shapes, decompression-bomb PNGs, /versions/1%0a,
                         bad Content-Type, Host and Origin, :explain
  issue25_grpc_calls     (method, serialized request) of its gRPC cases: tensors whose shape is far larger
                         than their values ([1,1,2^26,1] with one float_val, [1,8000,8000,1]), bombs, 1 MB names
  raw_http               raw bytes over a socket: oversized heads, heads that never end, bodies cut short
"""

from __future__ import annotations

import base64
import json
import random
import zlib

import numpy as np

from conftest import png_bytes

N_HOSTILE = 2200
UNICODE_VERSIONS = ["%C2%B2", "%E2%91%A0", "%EF%BC%91", "%D9%A1", "%F0%9D%9F%8F", "%E0%A5%A7", "1%C2%B2",
                    "-1", "+1", "1.0", "0x1", "%201", "1%00", "9" * 30, "%FF", "%C0%AF"]


def hostile_requests(rng: random.Random, good_bodies: list[bytes], n: int = N_HOSTILE):
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
    for i in range(n):
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



N_GRPC = 600


def hostile_grpc_calls(rng: random.Random, png: bytes, n: int = N_GRPC):
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
    for i in range(n):
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




# ---------------------------------------------------------------------------- issue 25's probe

def png_bomb(width: int, height: int) -> bytes:
    """A grayscale PNG of zeros: a few KB on the wire, width*height bytes once decoded (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    packer, row = zlib.compressobj(9), b"\0" * (width + 1)     # filter byte + a row of zeros
    idat = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# Not here: "01" and "%31" (TF Serving's (\d+) and SimpleAtoi take "01"; %31 is "1" percent-encoded).
VERSION_TRICKS = ["1%0a", "1%0d", "1%0d%0a", "1%09", "1%20", "%201", "1%00", "1/", "1%2f", "1.", "1e0",
                  "0b1", "1_0", "1%0a:predict"]
BAD_CONTENT_TYPES = ["text/plain", "text/plain;charset=UTF-8", "application/xml", "multipart/form-data; boundary=x",
                     "application/x-www-form-urlencoded", "image/png", "*/*", ""]
BAD_HOSTS = ["evil.example", "evil.example:8501", "127.0.0.1.nip.io", "localhost.evil.example", "[::2]:1", "x" * 300]
BAD_ORIGINS = ["http://evil.example", "null", "http://localhost.evil.example", "file://", "http://127.0.0.1.nip.io"]


def issue25_requests(rng: random.Random, n: int, *, png: bytes, bomb: bytes, over_cap_bomb: bytes):
    """(method, path, body, headers, expect) of issue 25's REST cases; `expect` is "4xx" where any answer
    below 400 would mean the hostile part was taken as valid, else "any" (a model may answer NaN input)."""
    png64, bomb64, over64 = (base64.b64encode(b).decode() for b in (png, bomb, over_cap_bomb))
    json_ct = {"content-type": "application/json"}
    verbs = [":predict", ":classify", ":explain"]
    kinds = ["nan_inf", "many_keys", "huge_string", "huge_shape", "bombs", "versions", "content_type", "host",
             "origin", "explain_junk", "many_instances"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "nan_inf":
            token = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "-1e999"])
            pixels = [[[[0.5]] * 8] * 8]
            body = json.dumps({"signature_name": "serving_pixels", "instances": pixels}).replace("0.5", token, 1 + rng.randrange(64))
            if rng.random() < 0.3:
                body = '{"signature_name": "serving_token_ids", "instances": [[%s, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}' % token
                yield "POST", "/v1/models/tiny_text:predict", body.encode(), json_ct, "4xx"
            else:
                yield "POST", "/v1/models/tiny_image:predict", body.encode(), json_ct, "any"
        elif kind == "many_keys":
            keys = 400_000 if rng.random() < 0.1 else rng.choice([1_000, 100_000])
            obj = "{" + ",".join(f'"k{j}":1' for j in range(keys)) + "}"
            body = rng.choice(['{"instances":[%s]}', '{"inputs":%s}', '%s', '{"examples":[%s]}']) % obj
            yield "POST", f"/v1/models/tiny_text{rng.choice(verbs)}", body.encode(), json_ct, "4xx"
        elif kind == "huge_string":
            size = 8_000_000 if rng.random() < 0.1 else rng.choice([100_000, 1_000_000])
            word = rng.choice(["good ", "x", "\u00e9", "\\u0000", "a b "])
            text = (word * (size // len(word) + 1))[:size]
            body = json.dumps({"instances": [text]}) if "\\" not in word else '{"instances": ["%s"]}' % text
            yield "POST", f"/v1/models/tiny_text{rng.choice(verbs)}", body.encode(), json_ct, "any"
        elif kind == "huge_shape":
            side = 2000 if rng.random() < 0.1 else rng.choice([300, 1000])
            row = "[" + ",".join(["[0]"] * side) + "]"
            body = '{"signature_name":"serving_pixels","inputs":[[%s]]}' % ",".join([row] * side)
            if rng.random() < 0.3:
                body = '{"signature_name":"serving_token_ids","inputs":[[%s]]}' % ",".join(["1"] * side * side)
                yield "POST", "/v1/models/tiny_text:predict", body.encode(), json_ct, "any"
            else:
                yield "POST", "/v1/models/tiny_image:predict", body.encode(), json_ct, "any"
        elif kind == "bombs":
            count = 4 if rng.random() < 0.1 else rng.choice([1, 2])
            images = [{"b64": rng.choice([bomb64, over64])} for _ in range(count)]
            if rng.random() < 0.3:
                images.append({"b64": png64})
            yield "POST", f"/v1/models/tiny_image{rng.choice([':predict', ':explain'])}", \
                json.dumps({"instances": images}).encode(), json_ct, "any"
        elif kind == "versions":
            version, suffix = rng.choice(VERSION_TRICKS), rng.choice(["", "/metadata", ":predict"])
            method = "POST" if suffix.startswith(":") or ":" in version else "GET"
            yield method, f"/v1/models/tiny_text/versions/{version}{suffix}", b'{"instances": ["a good film"]}', \
                json_ct, "4xx"
        elif kind == "content_type":
            headers = {"content-type": rng.choice(BAD_CONTENT_TYPES), "origin": "http://localhost"}
            yield "POST", "/v1/models/tiny_text:predict", b'{"instances": ["a good film"]}', headers, "4xx"
        elif kind == "host":
            path = rng.choice(["/", "/cnnapp/models", "/v1/models/tiny_text", "/v1/models/tiny_text:predict"])
            yield ("POST" if ":" in path else "GET"), path, b'{"instances": ["a good film"]}', \
                {"host": rng.choice(BAD_HOSTS), **json_ct}, "4xx"
        elif kind == "origin":
            yield "POST", f"/v1/models/tiny_text{rng.choice(verbs)}", b'{"instances": ["a good film"]}', \
                {"origin": rng.choice(BAD_ORIGINS), "content-type": rng.choice(["application/json", "text/plain"])}, "4xx"
        elif kind == "explain_junk":
            body = rng.choice([b"", b"{", b"[]", b'{"instances": 5}', b'{"instances": [{"b64": "@@"}]}',
                               b'{"instances": [null]}', b'{"instances": ["a"], "class_index": 99}',
                               b'{"instances": ["a"], "class_index": -2}', b'{"instances": ["a"], "class_index": "x"}',
                               bytes(rng.randrange(256) for _ in range(100))])
            yield "POST", f"/v1/models/{rng.choice(['tiny_text', 'tiny_image'])}:explain", body, json_ct, "4xx"
        else:
            count = rng.choice([10_001, 50_000])
            yield "POST", "/v1/models/tiny_text:predict", json.dumps({"instances": ["a"] * count}).encode(), json_ct, "4xx"


def issue25_grpc_calls(rng: random.Random, n: int, *, png: bytes, bomb: bytes, over_cap_bomb: bytes):
    """(method, serialized request, expect) of issue 25's gRPC cases: shapes far larger than their values
    (one float_val for a [1,1,2^26,1] tensor), bombs, a 1 MB model name."""
    import tensorflow as tf
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import get_model_status_pb2, predict_pb2

    def sparse(dtype, dims, field, value):
        t = tensor_pb2.TensorProto(dtype=dtype)
        for size in dims:
            t.tensor_shape.dim.add(size=size)
        getattr(t, field).append(value)
        return t

    kinds = ["float_broadcast", "int_broadcast", "string_broadcast", "content_short", "bombs", "huge_name"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        req = predict_pb2.PredictRequest()
        if kind == "float_broadcast":
            req.model_spec.name, req.model_spec.signature_name = "tiny_image", "serving_pixels"
            dims = rng.choice([[1, 1, 2 ** 26, 1], [1, 8000, 8000, 1], [2 ** 20, 8, 8, 1], [1, 2 ** 31, 1, 1],
                               [64, 4096, 4096, 1], [1, 8, 8, 1]])
            req.inputs["pixels"].CopyFrom(sparse(types_pb2.DT_FLOAT, dims, "float_val", rng.choice([0.0, 1.0])))
            yield "Predict", req.SerializeToString(), ("any" if dims == [1, 8, 8, 1] else "4xx")
        elif kind == "int_broadcast":
            req.model_spec.name, req.model_spec.signature_name = "tiny_text", "serving_token_ids"
            dims = rng.choice([[1, 2 ** 26], [2 ** 24, 12], [1, 2 ** 40]])
            req.inputs["token_ids"].CopyFrom(sparse(rng.choice([types_pb2.DT_INT64, types_pb2.DT_INT32]), dims,
                                                    "int64_val" if rng.random() < 0.5 else "int_val", 1))
            yield "Predict", req.SerializeToString(), "4xx"
        elif kind == "string_broadcast":
            req.model_spec.name = "tiny_text"
            req.inputs["sentences"].CopyFrom(sparse(types_pb2.DT_STRING, [rng.choice([10 ** 6, 10 ** 8, 2 ** 40])],
                                                    "string_val", b"a good film"))
            yield "Predict", req.SerializeToString(), "4xx"
        elif kind == "content_short":
            req.model_spec.name, req.model_spec.signature_name = "tiny_image", "serving_pixels"
            t = tf.make_tensor_proto(np.zeros((1, 8, 8, 1), np.float32))
            t.tensor_shape.dim[1].size = rng.choice([8000, 2 ** 20])
            req.inputs["pixels"].CopyFrom(t)
            yield "Predict", req.SerializeToString(), "4xx"
        elif kind == "bombs":
            req.model_spec.name = "tiny_image"
            images = [rng.choice([bomb, over_cap_bomb]) for _ in range(rng.choice([1, 2, 4]))]
            req.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images + ([png] if rng.random() < 0.3 else [])))
            yield "Predict", req.SerializeToString(), "any"
        else:
            name = "x" * rng.choice([100_000, 1_000_000])
            if rng.random() < 0.5:
                req.model_spec.name = name
                req.inputs["sentences"].CopyFrom(tf.make_tensor_proto(["a"]))
                yield "Predict", req.SerializeToString(), "NOT_FOUND"
            else:
                status = get_model_status_pb2.GetModelStatusRequest()
                status.model_spec.name = name
                yield "GetModelStatus", status.SerializeToString(), "NOT_FOUND"


def raw_http(rng: random.Random, n: int, *, host: str = "127.0.0.1"):
    """(kind, bytes to send, how) for a raw socket: "answer" reads the answer to the end, "drop" closes at
    once (a client that goes away), "hold" keeps the connection open unanswered (slowloris)."""
    head = f"Host: {host}\r\n".encode()
    good = b'{"instances": ["a good film"]}'
    kinds = ["oversized_head", "many_headers", "slowloris", "cut_body", "drop_after_request", "garbage",
             "bad_request_line", "huge_content_length"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "oversized_head":
            pad = b"a" * rng.choice([70_000, 200_000, 1_000_000])
            yield kind, b"GET /v1/models/tiny_text HTTP/1.1\r\n" + head + b"X-Pad: " + pad + b"\r\n\r\n", "answer"
        elif kind == "many_headers":
            headers = b"".join(b"X-H%d: v\r\n" % j for j in range(rng.choice([2_000, 20_000])))
            yield kind, b"GET /v1/models/tiny_text HTTP/1.1\r\n" + head + headers + b"\r\n", "answer"
        elif kind == "slowloris":
            partial = rng.choice([b"", b"G", b"GET /v1/models/tiny_text HTTP/1.1\r\n", b"POST /v1/models/tiny_text:predict "
                                  b"HTTP/1.1\r\n" + head + b"Content-Length: 100\r\n\r\n{\"inst"])
            yield kind, partial, "hold"
        elif kind == "cut_body":
            yield kind, (b"POST /v1/models/tiny_text:predict HTTP/1.1\r\n" + head + b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % (len(good) * 10) + good[: rng.randrange(len(good))]), "drop"
        elif kind == "drop_after_request":
            body = rng.choice([good, json.dumps({"instances": ["good " * 200_000]}).encode()])
            yield kind, (b"POST /v1/models/tiny_text:predict HTTP/1.1\r\n" + head + b"Content-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body), "drop"
        elif kind == "garbage":
            yield kind, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 2000))) + b"\r\n\r\n", "answer"
        elif kind == "bad_request_line":
            yield kind, rng.choice([b"GET / HTTP/9.9\r\n", b"GET\r\n", b"\x00\x01\x02 / HTTP/1.1\r\n",
                                    b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n", b"GET / HTTP/1.1 extra\r\n"]) + head + b"\r\n", "answer"
        else:
            yield kind, (b"POST /v1/models/tiny_text:predict HTTP/1.1\r\n" + head + b"Content-Type: application/json\r\n"
                         b"Content-Length: " + rng.choice([b"99999999999999999999", b"-1", b"1e9", b"0x10", b"1, 2"]) +
                         b"\r\n\r\n" + good), "answer"
