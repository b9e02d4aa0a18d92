"""Image preprocessing: encoded bytes -> fixed-size pixels, and training-time augmentation.

`ImageDecoder` is the one place images are decoded and resized. Image folders go through it when
they are loaded, and the exported `serving_default` signature runs the same layer on the bytes a
client sends, so training and serving see identical pixels. Scaling to [0, 1] is the model's own
first layer (`keras.layers.Rescaling`), so pixels travel as 0..255 everywhere.
"""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cnnapp")
class ImageDecoder(keras.layers.Layer):
    """Decode JPEG/PNG/BMP/GIF bytes to float32 pixels of shape [height, width, channels] in 0..255.

    >>> decoder = ImageDecoder(height=28, width=28, channels=1)
    >>> decoder(tf.constant([png_bytes]))      # -> [1, 28, 28, 1]

    Grayscale files are expanded to RGB and RGB files reduced to grayscale as `channels` asks;
    animated GIFs use their first frame; any size is resized (bilinear, no aspect-ratio crop).
    """

    def __init__(self, *, height: int, width: int, channels: int, **kwargs):
        kwargs["trainable"] = False   # nothing to learn; a saved config carries trainable too
        super().__init__(**kwargs)
        self.height, self.width, self.channels = int(height), int(width), int(channels)

    def decode_one(self, image_bytes):
        image = tf.io.decode_image(image_bytes, channels=self.channels, expand_animations=False)
        image.set_shape([None, None, self.channels])
        shape = tf.shape(image)
        # An image already at the target size skips the resize, which is then the identity (checked:
        # bit-equal) but was a quarter of a served 28x28 PNG's signature time.
        return tf.cond(
            tf.logical_and(tf.equal(shape[0], self.height), tf.equal(shape[1], self.width)),
            lambda: tf.reshape(tf.cast(image, tf.float32), (self.height, self.width, self.channels)),
            lambda: tf.clip_by_value(
                tf.image.resize(image, (self.height, self.width), method="bilinear", antialias=True), 0.0, 255.0))

    def call(self, image_bytes):
        return tf.map_fn(
            self.decode_one, image_bytes,
            fn_output_signature=tf.TensorSpec([self.height, self.width, self.channels], tf.float32))

    def resize_pixels(self, images):
        """The same resize for pixel tensors [N, H, W, C] (0..255) of any size."""
        images = tf.cast(images, tf.float32)
        if images.shape[1] == self.height and images.shape[2] == self.width:
            return images
        return tf.clip_by_value(
            tf.image.resize(images, (self.height, self.width), method="bilinear", antialias=True),
            0.0, 255.0)

    def get_config(self):
        return {**super().get_config(), "height": self.height, "width": self.width,
                "channels": self.channels}


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
