"""Image preprocessing: encoded bytes -> fixed-size pixels, and training-time augmentation.

`ImageDecoder` is the one place images are decoded and resized. Image folders go through it when
they are loaded, and the exported `serving_default` signature runs the same layer on the bytes a
client sends, so training and serving see identical pixels. Scaling to [0, 1] is the model's own
first layer (`keras.layers.Rescaling`), so pixels travel as 0..255 everywhere.
"""

from __future__ import annotations

import keras
import tensorflow as tf


RESAMPLE = ("area", "bilinear")


@keras.saving.register_keras_serializable(package="cnnapp")
class ImageDecoder(keras.layers.Layer):
    """Decode JPEG/PNG/BMP/GIF bytes to float32 pixels of shape [height, width, channels] in 0..255.

    >>> decoder = ImageDecoder(height=28, width=28, channels=1)
    >>> decoder(tf.constant([png_bytes]))      # -> [1, 28, 28, 1]

    Grayscale files are expanded to RGB and RGB files reduced to grayscale as `channels` asks (GIF, BMP,
    WebP and CMYK JPEG through `tf.image.rgb_to_grayscale`, alpha dropped; PNG and other JPEGs by their
    own decoders); animated GIFs use their first frame; any size is resized, no aspect-ratio crop.

    The resize (`resample`): "area" (the default) shrinks by averaging: a JPEG at least twice the
    target size in both sides is first decoded scaled down in the DCT by 2, 4 or 8 (libjpeg's own
    scaled decode, `decode_jpeg(ratio=...)`, never below the target size), then every image at least
    the target size in both sides is resized by `tf.image.resize(method="area")`; images smaller than
    the target in a side are resized bilinearly (antialiased). Per 400-photo loop, 128 px, CPU time of one
    decode thread: 1.45 ms a 320-500 px photo, against 2.81 ms for the full decode and antialiased
    bilinear resize of "bilinear" (the resize of models saved before "area" existed; their saved configs
    carry no `resample`, so they keep it) and 1.40 ms for Keras' folder pipeline (decode, bilinear
    without antialiasing).
    """

    def __init__(self, *, height: int, width: int, channels: int, resample: str = "area", **kwargs):
        kwargs["trainable"] = False   # nothing to learn; a saved config carries trainable too
        super().__init__(**kwargs)
        if resample not in RESAMPLE:
            raise ValueError(f"resample must be one of {RESAMPLE}, not {resample!r}")
        self.height, self.width, self.channels = int(height), int(width), int(channels)
        self.resample = resample

    def decode_one(self, image_bytes):
        if self.channels == 1:
            native = lambda: tf.cond(  # noqa: E731
                _needs_rgb_decode(image_bytes), lambda: _decode_to_gray(image_bytes),
                lambda: tf.io.decode_image(image_bytes, channels=1, expand_animations=False))
        else:
            native = lambda: tf.io.decode_image(image_bytes, channels=self.channels, expand_animations=False)  # noqa: E731
        if self.resample == "area":
            ratio = self._dct_ratio(image_bytes)
            image = tf.cond(ratio > 1, lambda: self._decode_jpeg_scaled(image_bytes, ratio), native)
        else:
            image = native()
        image.set_shape([None, None, self.channels])
        shape = tf.shape(image)
        # An image already at the target size skips the resize, which is then the identity (checked:
        # bit-equal) but was a quarter of a served 28x28 PNG's signature time.
        return tf.cond(
            tf.logical_and(tf.equal(shape[0], self.height), tf.equal(shape[1], self.width)),
            lambda: tf.reshape(tf.cast(image, tf.float32), (self.height, self.width, self.channels)),
            lambda: self._resize(image[None])[0])

    def _dct_ratio(self, image_bytes):
        """2, 4 or 8 for a 1- or 3-component JPEG at least that many times the target size in both sides
        (its scaled decode stays at or above the target size); else 1."""
        head = tf.strings.substr(tf.strings.join([tf.strings.substr(image_bytes, 0, 3), b"\0" * 3]), 0, 3)

        def ratio():
            shape = tf.io.extract_jpeg_shape(image_bytes)
            times = tf.minimum(shape[0] // self.height, shape[1] // self.width)
            r = tf.where(times >= 8, 8, tf.where(times >= 4, 4, tf.where(times >= 2, 2, 1)))
            return tf.where(tf.equal(shape[2], 4), 1, r)   # CMYK/YCCK JPEGs: their own path (native decode)
        return tf.cond(head == b"\xff\xd8\xff", ratio, lambda: tf.constant(1))

    def _decode_jpeg_scaled(self, image_bytes, r):
        scaled = lambda n: lambda: tf.io.decode_jpeg(image_bytes, channels=self.channels, ratio=n)  # noqa: E731
        return tf.case([(tf.equal(r, 8), scaled(8)), (tf.equal(r, 4), scaled(4))], default=scaled(2))

    def _resize(self, images):
        """[N, H, W, C] of any size -> [N, height, width, C] float32 in 0..255, by `resample`."""
        bilinear = lambda: tf.image.resize(images, (self.height, self.width), method="bilinear", antialias=True)  # noqa: E731
        if self.resample == "bilinear":
            return tf.clip_by_value(bilinear(), 0.0, 255.0)
        shape = tf.shape(images)
        shrink = tf.logical_and(shape[1] >= self.height, shape[2] >= self.width)
        area = lambda: tf.image.resize(images, (self.height, self.width), method="area")  # noqa: E731
        return tf.clip_by_value(tf.cond(shrink, area, bilinear), 0.0, 255.0)

    def call(self, image_bytes):
        return tf.map_fn(
            self.decode_one, image_bytes,
            fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels], tf.float32))

    def resize_pixels(self, images):
        """The same resize for pixel tensors [N, H, W, C] (0..255) of any size."""
        images = tf.cast(images, tf.float32)
        if images.shape[1] == self.height and images.shape[2] == self.width:
            return images
        return self._resize(images)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "channels": self.channels, "resample": self.resample}

    @classmethod
    def from_config(cls, config):
        # Saved before `resample` existed: those models were trained on the antialiased bilinear resize.
        return cls(**{"resample": "bilinear", **config})


def _needs_rgb_decode(image_bytes):
    """True for the files `decode_image(channels=1)` refuses: GIF, BMP and WebP (their decoders give 3 or 4
    channels only) and 4-component (CMYK/YCCK) JPEGs (libjpeg cannot convert those to grayscale). PNG and
    other JPEGs keep their native grayscale decode, so their pixels are bit-for-bit those of before."""
    # Twelve bytes whatever the input's length (padded with zeros), so a short body is refused by the decoder
    # with its own reason ("Unknown image file format"), not by this test.
    head = tf.strings.substr(tf.strings.join([tf.strings.substr(image_bytes, 0, 12), b"\0" * 12]), 0, 12)
    two, four = tf.strings.substr(head, 0, 2), tf.strings.substr(head, 0, 4)
    native_rgb = tf.reduce_any([four == b"GIF8", two == b"BM",
                                tf.logical_and(four == b"RIFF", tf.strings.substr(head, 8, 4) == b"WEBP")])
    is_jpeg = tf.strings.substr(head, 0, 3) == b"\xff\xd8\xff"
    return tf.logical_or(native_rgb, tf.logical_and(is_jpeg, tf.cond(
        is_jpeg, lambda: tf.image.extract_jpeg_shape(image_bytes)[2] == 4, lambda: tf.constant(False))))


def _decode_to_gray(image_bytes):
    """Decode natively (a GIF's first frame; CMYK JPEGs come out RGB), drop alpha, then one channel by
    `tf.image.rgb_to_grayscale`'s weights, rounded back to uint8 like every other decode."""
    image = tf.io.decode_image(image_bytes, channels=0, expand_animations=False)
    image = tf.cast(image[:, :, :3], tf.float32)   # drop alpha; a grayscale BMP stays [H, W, 1]
    gray = tf.cond(tf.shape(image)[2] == 1, lambda: image,
                   lambda: tf.image.rgb_to_grayscale(tf.reshape(image, tf.concat([tf.shape(image)[:2], [3]], 0))))
    return tf.cast(tf.round(tf.clip_by_value(gray, 0.0, 255.0)), tf.uint8)


def _pad_and_crop(size):
    """Zero-pad by ~1/8 of the side (at least 1 pixel), then crop a random window of the original
    size: translations of up to that many pixels, as in the ResNet and airbench recipes."""
    h, w = size
    pad = (max(1, h // 8), max(1, w // 8))
    return [keras.layers.ZeroPadding2D(pad), keras.layers.RandomCrop(h, w)]


# Augmentations are Keras preprocessing layers applied to training batches only.
AUGMENTATIONS = {
    "flip": lambda size: [keras.layers.RandomFlip("horizontal")],
    "crop": _pad_and_crop,
    "translate": lambda size: [keras.layers.RandomTranslation(0.1, 0.1, fill_mode="constant")],
    "rotate": lambda size: [keras.layers.RandomRotation(0.05, fill_mode="constant")],
    "zoom": lambda size: [keras.layers.RandomZoom(0.1, fill_mode="constant")],
    "contrast": lambda size: [keras.layers.RandomContrast(0.2)],
}


def build_augmenter(names, *, seed: int | None = None, image_size=(28, 28)) -> keras.Sequential | None:
    """A Sequential of the named augmentations, or None when there are none ('none' alone: none)."""
    names = [n for n in names if n != "none"]
    if not names:
        return None
    unknown = [n for n in names if n not in AUGMENTATIONS]
    if unknown:
        from cnnapp.errors import CnnappError
        raise CnnappError(
            f"--augment: unknown augmentation {unknown[0]!r}; choose from {', '.join(AUGMENTATIONS)}. "
            f"Received: augment={','.join(names)}")
    layers = []
    for i, n in enumerate(names):
        for layer in AUGMENTATIONS[n](tuple(image_size)):
            if seed is not None and "seed" in layer.get_config():
                layer = type(layer).from_config({**layer.get_config(), "seed": seed + i})
            layers.append(layer)
    return keras.Sequential(layers, name="augment")
