"""Encoded images -> float32 pixels [H, W, C] in 0..255 without TensorFlow, as the export's `ImageDecoder` does.

The LiteRT runtime takes pixels, so `predict` decodes here (Pillow) what the SavedModel decodes in
its graph (cnnapp.preprocessing.image.ImageDecoder); tests/test_litert.py compares the two:

- JPEG through libjpeg-turbo with TensorFlow's settings (simplejpeg: the fast integer DCT, fancy
  upsampling, a damaged file decoded as far as it goes; bit-equal to `tf.io.decode_jpeg` here), CMYK/YCCK as TensorFlow converts it (c * k // 255);
- 3 channels: grayscale expanded, alpha dropped (not composited), a palette looked up; 1 channel:
  PNG by libpng's `rgb_to_gray` (coefficients 9797/19234/3737 of 2^15, truncated) and JPEG by its
  luma plane, as their own decoders do; GIF, BMP, WebP and CMYK JPEG in colour, then
  `tf.image.rgb_to_grayscale`'s weights rounded back to uint8; 16-bit PNGs keep their high byte;
  an animated GIF its first frame;
- an image already at the model's size is used as it is; any other size is resized by the decoder's
  `resample`: "bilinear" as `tf.image.resize(method="bilinear", antialias=True)` does (TensorFlow's
  ScaleAndTranslate with a triangle kernel widened by the scale when shrinking, half-pixel centres);
  "area" first decodes a 1- or 3-component JPEG at least 2, 4 or 8 times the size in both sides
  scaled down by that ratio in the DCT (libjpeg's scaled decode, as `decode_jpeg(ratio=...)`), then
  shrinks an image at least the size in both sides as `tf.image.resize(method="area")` (ResizeArea:
  box averages with fractional edges) and enlarges the others bilinearly; then clipped to 0..255.
"""

from __future__ import annotations

import io
import warnings

import numpy as np

GRAY_WEIGHTS = np.array([0.2989, 0.5870, 0.1140], dtype=np.float32)   # tf.image.rgb_to_grayscale's
MAX_PIXELS = 8192 * 8192     # larger frames are refused before they are decoded (a decompression bomb)


class DecodeError(ValueError):
    """An input that is not an image this runtime decodes; the message is the reason."""


def _open(data: bytes):
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data))
        except (Image.DecompressionBombWarning, Image.DecompressionBombError):
            raise DecodeError(f"image too large to decode (over {MAX_PIXELS:,} pixels)") from None
        except Exception:
            if data[:3] == b"\xff\xd8\xff":   # a JPEG that Pillow cannot even identify: cut short or damaged
                raise DecodeError(f"cannot decode the JPEG (truncated or corrupt, {len(data)} bytes)") from None
            raise DecodeError("Unknown image file format. One of JPEG, PNG, GIF, BMP or WebP required.") from None
    if image.format not in ("PNG", "JPEG", "GIF", "BMP", "WEBP"):
        raise DecodeError(f"Unknown image file format ({image.format}). One of JPEG, PNG, GIF, BMP or WebP required.")
    if image.width * image.height > MAX_PIXELS:
        raise DecodeError(f"image too large to decode ({image.width}x{image.height} pixels, over {MAX_PIXELS:,})")
    return image


def _rgb(image) -> np.ndarray:
    """uint8 [H, W, 3]: the colour decode, alpha dropped (a grayscale image is expanded)."""
    if image.mode in ("I;16", "I;16B", "I"):
        gray = (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)      # 16-bit: the high byte
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode == "LA":
        image = image.getchannel("L")
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


def _jpeg(data: bytes, channels: int, *, target: tuple[int, int] | None = None) -> np.ndarray:
    """uint8 [H, W, channels] as tf.io.decode_jpeg (INTEGER_FAST, fancy upscaling) and ImageDecoder decode it;
    with `target` (resample "area"), scaled down in the DCT by 2, 4 or 8 where the file is that many times
    the target size in both sides."""
    import simplejpeg
    try:
        height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
        times = min(height // target[0], width // target[1]) if target else 1
        ratio = 8 if times >= 8 else 4 if times >= 4 else 2 if times >= 2 else 1
        if ratio > 1 and colorspace not in ("CMYK", "YCCK"):
            # decode_jpeg(ratio=r) is libjpeg's scale 1/r: sides ceil(side / r)
            pixels = simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY", fastdct=True,
                                            fastupsample=False, min_height=-(-height // ratio),
                                            min_width=-(-width // ratio), min_factor=ratio, strict=False)
            return pixels.reshape(pixels.shape[0], pixels.shape[1], channels)
        if colorspace in ("CMYK", "YCCK"):   # TensorFlow's CMYK -> RGB: c * k // 255 (Adobe's inverted CMYK)
            cmyk = simplejpeg.decode_jpeg(data, colorspace="CMYK", fastdct=True, fastupsample=False,
                                          strict=False).astype(np.uint16)
            rgb = (cmyk[:, :, :3] * cmyk[:, :, 3:4] // 255).astype(np.uint8)
            return rgb if channels == 3 else _to_gray(rgb)
        return simplejpeg.decode_jpeg(data, colorspace="RGB" if channels == 3 else "GRAY", fastdct=True,
                                      fastupsample=False, strict=False).reshape(height, width, channels)
    except ValueError as e:
        raise DecodeError(f"cannot decode the JPEG ({str(e).splitlines()[0][:160]})") from None


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """tf.image.rgb_to_grayscale on uint8 RGB, rounded back to uint8: [H, W, 1]."""
    gray = np.tensordot(rgb.astype(np.float32), GRAY_WEIGHTS, axes=([2], [0]))
    return np.round(np.clip(gray, 0.0, 255.0)).astype(np.uint8)[:, :, None]


def _gray(image) -> np.ndarray:
    """uint8 [H, W, 1] as ImageDecoder(channels=1) decodes a non-JPEG image."""
    if image.format == "PNG" and image.mode in ("RGB", "RGBA", "P", "PA"):
        if image.mode in ("P", "PA"):
            image = image.convert("RGBA" if "transparency" in image.info or image.mode == "PA" else "RGB")
        rgb = np.asarray(image, dtype=np.uint32)[:, :, :3]
        # libpng's png_set_rgb_to_gray(1, 0.299, 0.587): 15-bit fixed-point coefficients, truncated.
        gray = (rgb[:, :, 0] * 9797 + rgb[:, :, 1] * 19234 + rgb[:, :, 2] * 3737) >> 15
        return gray.astype(np.uint8)[:, :, None]
    if image.format == "PNG":
        if image.mode in ("I;16", "I;16B", "I"):
            return (np.asarray(image, dtype=np.uint32) >> 8).astype(np.uint8)[:, :, None]
        return np.asarray(image.convert("L"), dtype=np.uint8)[:, :, None]
    return _to_gray(_rgb(image))          # GIF, BMP, WebP: rgb_to_grayscale


def _resize_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of TensorFlow's ScaleAndTranslate, triangle kernel, antialias (float32 steps)."""
    scale = np.float32(out_size) / np.float32(in_size)
    inv_scale = np.float32(1.0) / scale
    kernel_scale = max(inv_scale, np.float32(1.0))
    weights = np.zeros((out_size, in_size), dtype=np.float32)
    for x in range(out_size):
        sample = np.float32(x + 0.5) * inv_scale
        if sample < 0 or sample > in_size:
            continue
        start = int(np.ceil(sample - kernel_scale - np.float32(0.5)))
        end = int(np.floor(sample + kernel_scale - np.float32(0.5)))
        start, end = min(max(start, 0), in_size - 1), min(max(end, 0), in_size - 1) + 1
        pos = np.arange(start, end, dtype=np.float32) + np.float32(0.5) - sample
        w = np.maximum(np.float32(0.0), np.float32(1.0) - np.abs(pos / kernel_scale)).astype(np.float32)
        total = w.sum(dtype=np.float32)
        if abs(total) >= 1000.0 * np.finfo(np.float32).tiny:
            w = w * (np.float32(1.0) / total)
        weights[x, start:end] = w
    return weights


def _area_weights(in_size: int, out_size: int) -> np.ndarray:
    """[out, in] weights of TensorFlow's ResizeArea (align_corners false): each output cell averages the
    input cells its box [y * scale, (y + 1) * scale) covers, edge cells by the part covered (float32 steps)."""
    scale = np.float32(in_size) / np.float32(out_size)
    weights = np.zeros((out_size, in_size), dtype=np.float64)
    for y in range(out_size):
        start, end = np.float32(y) * scale, np.float32(y + 1) * scale
        for i in range(int(np.floor(start)), int(np.ceil(end))):
            covered = np.float32(min(np.float32(i + 1), end) - max(np.float32(i), start))
            weights[y, min(i, in_size - 1)] += covered
    return weights / np.float64(scale)


def resize(pixels: np.ndarray, height: int, width: int, *, resample: str = "bilinear") -> np.ndarray:
    """float32 [H, W, C] -> [height, width, C] as ImageDecoder resizes, clipped to 0..255: "bilinear" is
    tf.image.resize(bilinear, antialias=True); "area" is tf.image.resize(area) for an image at least the
    size in both sides, else the bilinear one."""
    area = resample == "area" and pixels.shape[0] >= height and pixels.shape[1] >= width
    weights = _area_weights if area else _resize_weights
    rows = weights(pixels.shape[0], height)
    cols = weights(pixels.shape[1], width)
    out = np.einsum("yh,hwc->ywc", rows, pixels.astype(np.float32), optimize=True)
    out = np.einsum("xw,ywc->yxc", cols, out, optimize=True)
    return np.clip(out, 0.0, 255.0).astype(np.float32)


def decode(data: bytes, *, height: int, width: int, channels: int, resample: str = "bilinear") -> np.ndarray:
    """Encoded bytes -> float32 [height, width, channels] in 0..255; DecodeError with the reason."""
    if resample not in ("bilinear", "area"):
        raise ValueError(f"resample must be bilinear or area. Received: {resample!r}")
    image = _open(data)
    try:
        if image.format == "JPEG":
            pixels = _jpeg(data, channels, target=(height, width) if resample == "area" else None)
        else:
            image.seek(0)    # an animated GIF: its first frame
            pixels = _gray(image) if channels == 1 else _rgb(image)
    except DecodeError:
        raise
    except Exception as e:     # a truncated or corrupt file: the decoder's reason, in one line
        raise DecodeError(f"cannot decode the image ({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
    if pixels.shape[0] == height and pixels.shape[1] == width:
        return pixels.astype(np.float32)
    return resize(pixels, height, width, resample=resample)
