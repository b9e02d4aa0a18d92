"""`POST /v1/models/<name>[/versions/N|/labels/L]:explain`: cnnapp's extension beside TF Serving's API.

It calls the model's `explain` signature (exported beside `serving_default`, see
cnnapp/export/explain.py) and answers what `cnnapp inspect` prints, through the same reader
(cnnapp/explain.py). Errors have TF Serving's shape, `{"error": "..."}`, and the body obeys
`--max_body` like every other request.

Request (rows, as `:predict` takes them; images as `{"b64": ...}`, sentences as strings):

    {"instances": [{"b64": "iVBOR..."}],          # or ["a sentence", ...]
     "class": "7",                               # optional: the class Grad-CAM explains (or "class_index": 7)
     "images": "png",                            # "png" (base64 PNGs, the default) or "array" (floats)
     "max_maps": 16}                             # feature maps per layer, most active first (<= 64)

An instance may also be an object, `{"image_bytes": {"b64": ...}, "class": "7"}` or
`{"sentences": "..."}`, to name a class per image. Answer: `{"model_spec": {...}, "explanations":
[one per instance]}`; see `image_explanation` / `text_explanation` for their keys. With
`"images": "array"` every picture is `{"values": ...}` instead of `{"png": ...}`: the heatmap
(0..1) for `gradcam`/`hirescam` `overlay`, the pixels (0..255) for `input`, a map's activations,
a filter's weights.
"""

from __future__ import annotations

import numpy as np

from cnnapp.explain import IMAGE_FORMATS, image_explanation, text_explanation
from cnnapp.serving.codec import ServingError, to_array

SIGNATURE = "explain"
MAX_INSTANCES = 16          # an explanation is large (every map of every layer): keep a request bounded
MAX_MAPS = 64
DEFAULT_MAPS = 16
_KEYS = {"instances", "class", "class_index", "images", "max_maps", "top", "signature_name"}


def _class_index(value_name, value_index, classes: list[str], where: str) -> int:
    if value_name is not None and value_index is not None:
        raise ServingError(f"{where}: give 'class' or 'class_index', not both")
    if value_name is not None:
        if not isinstance(value_name, str) or value_name not in classes:
            shown = ", ".join(repr(c) for c in classes[:20]) + (" ..." if len(classes) > 20 else "")
            raise ServingError(f"{where}: 'class' must be one of the model's classes ({shown}). "
                               f"Received: {str(value_name)[:80]!r}")
        return classes.index(value_name)
    if value_index is None:
        return -1
    if isinstance(value_index, bool) or not isinstance(value_index, int) or not -1 <= value_index < len(classes):
        raise ServingError(f"{where}: 'class_index' must be an integer from -1 (the top class) to "
                           f"{len(classes) - 1}. Received: {str(value_index)[:40]}")
    return value_index


def _int_option(doc: dict, key: str, default: int, low: int, high: int) -> int:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ServingError(f"'{key}' must be an integer from {low} to {high}. Received: {str(value)[:40]}")
    return value


def decode_explain(doc: dict, servable) -> tuple[dict[str, np.ndarray], dict]:
    """An :explain body -> (the explain signature's inputs, options for the reader)."""
    unknown = sorted(set(doc) - _KEYS)
    if unknown:
        raise ServingError(f"unknown key(s) {unknown[:5]} in an :explain request (it takes {sorted(_KEYS)})")
    if doc.get("signature_name", SIGNATURE) != SIGNATURE:
        raise ServingError(f":explain calls the '{SIGNATURE}' signature; use :predict for others. "
                           f"Received: signature_name={str(doc['signature_name'])[:80]!r}")
    meta = servable.cnnapp
    kind, specs = meta.get("kind"), servable.inputs[SIGNATURE]
    raw_name = "image_bytes" if kind == "image" else "sentences"
    if raw_name not in specs:
        raise ServingError(f"the '{SIGNATURE}' signature of {servable.name} takes {sorted(specs)}, "
                           f"not cnnapp's {raw_name!r}")
    rows = doc.get("instances")
    if not isinstance(rows, list) or not rows:
        raise ServingError("'instances' must be a non-empty list, one entry per example. "
                           f"Received: {str(rows)[:80]}")
    if len(rows) > MAX_INSTANCES:
        raise ServingError(f"an :explain request takes at most {MAX_INSTANCES} instances (each answer holds every "
                           f"feature map). Received: {len(rows)}")
    images = doc.get("images", "png")
    if images not in IMAGE_FORMATS:
        raise ServingError(f"'images' must be one of {list(IMAGE_FORMATS)}. Received: {str(images)[:40]!r}")
    options = {"images": images, "max_maps": _int_option(doc, "max_maps", DEFAULT_MAPS, 1, MAX_MAPS),
               "top": _int_option(doc, "top", 5, 1, 100)}
    classes = [str(c) for c in meta.get("class_names", [])]
    default_class = _class_index(doc.get("class"), doc.get("class_index"), classes, "request")
    raws, wanted = [], []
    for i, row in enumerate(rows):
        if isinstance(row, dict) and not (len(row) == 1 and "b64" in row):
            extra = sorted(set(row) - {raw_name, "class", "class_index"})
            if raw_name not in row or extra:
                raise ServingError(f"instance {i}: an object takes {raw_name!r} and optionally 'class' or "
                                   f"'class_index'. Received keys: {sorted(row)[:5]}")
            raws.append(row[raw_name])
            own = _class_index(row.get("class"), row.get("class_index"), classes, f"instance {i}")
            wanted.append(own if ("class" in row or "class_index" in row) else default_class)
        else:
            raws.append(row)
            wanted.append(default_class)
    for i, raw in enumerate(raws):      # an empty sentence has nothing to explain (the page disables it too)
        if raw_name == "sentences" and isinstance(raw, str) and not raw.strip():
            raise ServingError(f"instance {i}: the sentence is empty: there is nothing to explain. Received: {raw!r}")
    inputs = {raw_name: to_array(raws, specs[raw_name])}
    if "class_index" in specs:
        inputs["class_index"] = np.asarray(wanted, np.int32)
    return inputs, options


async def explain(service, servable, body: bytes, work, encode=lambda answer: answer):
    """The `:explain` answer for one request body (passed through `encode` in the worker), or
    ServingError. Like a large :predict it runs in a worker of the ServingService holding a
    heavy-request slot (serving/work.py), parses its body there, and calls the explain signature
    one instance at a time, checking `work` (the request's deadline and cancel flag) before each,
    so a timed-out request stops between images."""
    if SIGNATURE not in servable.signatures or not servable.cnnapp.get("explain"):
        raise ServingError(f"{servable.name} version {servable.version} has no '{SIGNATURE}' signature (it was "
                           f"exported before cnnapp could explain, or it is an ensemble): export it again to "
                           f"explain it; :predict works as before")

    def job(work):
        inputs, options = decode_explain(service.parse(body), servable)
        return encode({"model_spec": {"name": servable.name, "signature_name": SIGNATURE,
                                      "version": str(servable.version)},
                       "explanations": [explain_one(servable, {k: v[i:i + 1] for k, v in inputs.items()}, options,
                                                    work, service.work)
                                        for i in range(len(next(iter(inputs.values()))))]})

    return await service.run_work(job, work=work, heavy=True)


def explain_one(servable, inputs: dict[str, np.ndarray], options: dict, work, stats=None) -> dict:
    """One instance's explanation (`inputs` hold one example)."""
    work.check()
    if stats is not None:
        stats.add("chunks")
    outputs = servable.call(SIGNATURE, inputs)
    meta = servable.cnnapp["explain"]
    if servable.cnnapp.get("kind") == "image":
        return image_explanation(outputs, 0, meta, max_maps=options["max_maps"], images=options["images"],
                                 top_k=options["top"])
    return {"sentence": inputs["sentences"][0].decode("utf-8", "replace"),
            **text_explanation(outputs, 0, meta, top=options["top"])}
