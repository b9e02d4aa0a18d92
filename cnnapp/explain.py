"""Read the `explain` signature's outputs: plain results for `cnnapp inspect`, `:explain` and the page.

The signature (cnnapp.export.explain) computes everything inside the graph; this module only
ranks, aggregates and encodes its numpy outputs, so the CLI and the server give the same answer
for the same input. It imports numpy and the standard library only: the server uses it without
Keras.

>>> outputs = {k: v.numpy() for k, v in loaded.signatures["explain"](image_bytes=..., class_index=...).items()}
>>> image_explanation(outputs, 0, metadata["explain"], images="png")["top"][0]
{'class': '3', 'index': 3, 'probability': 0.998}
"""

from __future__ import annotations

import base64
import struct
import zlib

import numpy as np

# Colour maps as a few anchors, linearly interpolated: viridis for activations, jet for Grad-CAM.
VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], np.float32)
JET = np.array([(0, 0, 128), (0, 0, 255), (0, 255, 255), (255, 255, 0), (255, 0, 0), (128, 0, 0)], np.float32)
IMAGE_FORMATS = ("png", "array")


# ---------------------------------------------------------------------------- images as PNG

def encode_png(image: np.ndarray) -> bytes:
    """uint8 [H, W] (gray) or [H, W, 3] (RGB) -> PNG bytes (zlib only; no imaging library needed)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    height, width = image.shape[:2]
    colour = 0 if image.ndim == 2 else 2
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, -1)], axis=1)

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b""))


def b64_png(image: np.ndarray) -> str:
    return base64.b64encode(encode_png(image)).decode("ascii")


def colorize(values: np.ndarray, anchors: np.ndarray = VIRIDIS) -> np.ndarray:
    """Values in 0..1 -> uint8 RGB through a colour map given by its anchors."""
    x = np.clip(np.nan_to_num(values), 0.0, 1.0) * (len(anchors) - 1)
    low = np.minimum(x.astype(np.int32), len(anchors) - 2)
    frac = (x - low)[..., np.newaxis]
    return (anchors[low] * (1 - frac) + anchors[low + 1] * frac).astype(np.uint8)


def gray_rgb(pixels: np.ndarray) -> np.ndarray:
    """Model input pixels [H, W, 1 or 3] in 0..255 -> uint8 RGB."""
    pixels = np.clip(pixels, 0, 255).astype(np.uint8)
    return np.repeat(pixels, 3, axis=-1) if pixels.shape[-1] == 1 else pixels[..., :3]


def gradcam_overlay(pixels: np.ndarray, cam: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The input with the Grad-CAM heatmap (jet) blended over it, uint8 RGB at the input size."""
    heat = colorize(cam, JET).astype(np.float32)
    base = gray_rgb(pixels).astype(np.float32)
    return (base * (1 - alpha) + heat * alpha).astype(np.uint8)


def upscale(image: np.ndarray, at_least: int = 224) -> np.ndarray:
    """Nearest-neighbour enlargement so a 28x28 map is visible in a file viewer."""
    factor = max(1, at_least // max(image.shape[:2]))
    return image.repeat(factor, axis=0).repeat(factor, axis=1)


def _picture(image: np.ndarray, fmt: str, values: np.ndarray | None = None):
    """{"png": base64} or {"values": nested lists} for one picture."""
    if fmt == "array":
        return {"values": np.round(np.asarray(values if values is not None else image, np.float64), 4).tolist()}
    return {"png": b64_png(image)}


# ---------------------------------------------------------------------------- images

def top_classes(scores: np.ndarray, classes, k: int = 5) -> list[dict]:
    order = np.argsort(-scores, kind="stable")[:k]
    return [{"class": _text(classes[i]), "index": int(i), "probability": round(float(scores[i]), 6)} for i in order]


def _text(value) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def image_explanation(outputs: dict, i: int, explain_meta: dict, *, max_maps: int = 16, images: str = "png",
                      top_k: int = 5) -> dict:
    """Example `i` of an image explain call: top-k, Grad-CAM and HiResCAM overlays, each block's maps
    (most active first), the first layer's filters.

    `images="png"` gives base64 PNGs (maps scaled by their layer's peak, so strengths compare within
    a layer); `images="array"` the float values instead. At most `max_maps` maps per layer.
    """
    scores, classes = outputs["scores"][i], outputs["classes"][i]
    chosen = int(outputs["class_index"][i])
    pixels = outputs["pixels"][i]

    def heatmap(key):
        cam = outputs[key][i]
        return {"class_index": chosen, "class": _text(classes[chosen]), "layer": explain_meta.get("gradcam_layer"),
                "peak": [int(v) for v in np.unravel_index(int(np.argmax(cam)), cam.shape)],
                "empty": not bool(cam.max() > 0),       # nothing positive: the map says nothing
                "overlay": _picture(gradcam_overlay(pixels, cam), images, cam)}

    result = {
        "top": top_classes(scores, classes, top_k),
        "scores": [round(float(s), 6) for s in scores],
        "classes": [_text(c) for c in classes],
        "predicted": _text(classes[int(np.argmax(scores))]),
        "gradcam": heatmap("gradcam"),
        "hirescam": heatmap("hirescam"),
        "input": _picture(gray_rgb(pixels), images, pixels[..., 0] if pixels.shape[-1] == 1 else pixels),
        "layers": [],
    }
    for spec in explain_meta.get("maps", []):
        maps = outputs[spec["output"]][i]                                # [h, w, c]
        peaks = maps.max(axis=(0, 1))
        order = np.argsort(-peaks, kind="stable")[:max_maps]
        scale = float(peaks.max()) or 1.0
        result["layers"].append({
            "name": spec["layer"], "shape": list(maps.shape),
            "active_fraction": round(float((maps > 0).mean()), 3),
            "maps": [{"index": int(c), "max": round(float(peaks[c]), 4),
                      **_picture(colorize(maps[..., c] / scale), images, maps[..., c])} for c in order],
        })
    kernel = outputs["filters"][i]                                       # [kh, kw, in, out]
    tiles = []
    for f in range(kernel.shape[-1]):
        k = kernel[..., f]
        span = float(np.ptp(k)) or 1.0
        norm = (k - k.min()) / span
        tile = (norm * 255).astype(np.uint8)
        tiles.append({"index": f, **_picture(tile if tile.shape[-1] == 3 else tile[..., 0], images,
                                             k if k.shape[-1] == 3 else k[..., 0])})
    result["filters"] = {"layer": explain_meta.get("filters_layer"), "shape": list(kernel.shape), "tiles": tiles}
    return result


# ---------------------------------------------------------------------------- sentences

def text_explanation(outputs: dict, i: int, explain_meta: dict, *, top: int = 5, top_k: int = 5) -> dict:
    """Example `i` of a sentence explain call: class probabilities, the sentence's tokens, the winning
    n-grams ranked by their contribution to the predicted class, and a score per token.

    A filter's contribution is its max-over-time activation times its weight in the logits layer
    for the class; filters whose winning window is the same n-gram are summed. A token's score
    spreads each filter's contribution evenly over the real tokens of its window. `unknown_tokens`
    counts the tokens not in the vocabulary (shown as '[UNK]').
    """
    scores, classes = outputs["scores"][i], outputs["classes"][i]
    predicted = int(np.argmax(scores))
    ids = outputs["token_ids"][i]
    length = int(np.count_nonzero(ids))
    tokens = [_text(t) for t in outputs["tokens"][i][:length]]
    widths, starts = outputs["ngram_width"][i], outputs["ngram_start"][i]
    activation, contribution = outputs["activation"][i], outputs["contribution"][i]
    token_scores = np.zeros(length, np.float64)
    found = []
    for f in range(len(widths)):
        width, start = int(widths[f]), int(starts[f])
        lo, hi = max(start, 0), min(start + width, length)
        value = float(contribution[f, predicted])
        if hi > lo:
            token_scores[lo:hi] += value / (hi - lo)
        found.append({"ngram": " ".join(tokens[lo:hi]), "width": width, "filter": f, "start": start,
                      "first_token": lo, "end_token": hi, "activation": round(float(activation[f]), 4),
                      "contribution": value, "padding_only": hi <= lo})
    best: dict[tuple, dict] = {}
    for item in sorted(found, key=lambda d: -d["contribution"]):
        if item["contribution"] <= 0 or item["padding_only"]:
            continue
        key = (item["first_token"], item["end_token"])
        if key in best:
            best[key]["contribution"] += item["contribution"]
            best[key]["filters"] += 1
        else:
            best[key] = {**item, "filters": 1}
    ranked = sorted(best.values(), key=lambda d: -d["contribution"])[:top]
    for item in ranked:
        item["contribution"] = round(item["contribution"], 4)
        item.pop("padding_only")
    # TextVectorization's vocabulary: 0 is padding, 1 the out-of-vocabulary token ('[UNK]').
    unknown = int(np.count_nonzero(ids[:length] == 1))
    return {"tokens": tokens, "unknown_tokens": unknown, "predicted": _text(classes[predicted]),
            "predicted_index": predicted,
            "probabilities": [round(float(s), 6) for s in scores], "classes": [_text(c) for c in classes],
            "top": top_classes(scores, classes, top_k), "ngrams": ranked,
            "token_scores": [round(float(s), 4) for s in token_scores]}
