"""Images: a registered image source -> `ImageDecoder` (bytes or pixels -> float pixels 0..255)."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import tensorflow as tf

from cnnapp.data import RawData, Splits, with_class_names
from cnnapp.data.image import ImageRequest, read_image_data
from cnnapp.errors import CnnappError
from cnnapp.export.explain import SIGNATURE as EXPLAIN, explainable, image_explainer
from cnnapp.preprocessing.image import ImageDecoder, build_augmenter
from cnnapp.tasks import Prepared


@dataclass(frozen=True)
class ImageTask:
    """>>> run(ImageTask(ImageRequest(dataset="digits")), train=TrainConfig(), model=ModelChoice())"""

    request: ImageRequest = ImageRequest()
    augment: tuple[str, ...] | None = None   # names from AUGMENTATIONS; None: the source's preset
    class_names: tuple[str, ...] = ()     # names for integer labels, in label order (--class-names)
    kind = "image"

    def describe(self) -> dict:
        return {"data": self.request.data, "dataset": self.request.dataset, "data_dir": self.request.data_dir,
                "image_size": self.request.image_size, "channels": self.request.channels,
                "skip_bad_images": self.request.skip_bad,
                "augment": None if self.augment is None else list(self.augment),
                "class_names": list(self.class_names)}

    def preflight(self, *, batch_size: int | None, model_options: dict) -> None:
        """Refuse an --image-size whose first-layer activations cannot fit in memory, before reading data."""
        if self.request.image_size is not None:
            check_activation_memory(self.request.image_size, batch_size=batch_size, model_options=model_options)

    def load(self) -> tuple[RawData, str]:
        build_augmenter(self.augment or ())   # an unknown augmentation fails before any data is read
        data, source = read_image_data(dataclasses.replace(
            self.request, decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c)))
        return with_class_names(data, self.class_names), source

    def prepare(self, data: RawData, splits: Splits, *, model_options: dict, seed: int) -> Prepared:
        (height, width), channels = data.info["image_size"], data.info["channels"]
        return image_prepared(ImageDecoder(height=height, width=width, channels=channels, name="image_decoder"),
                              num_classes=splits.num_classes)

    def augmenter(self, data: RawData, seed: int):
        """The asked augmentations, else the source's preset (flips only where the data allows)."""
        names = data.info.get("augment", ()) if self.augment is None else self.augment
        return build_augmenter(names, seed=seed, image_size=data.info["image_size"])

    def tta(self, data: RawData, asked: str | None) -> str:
        """The test-time augmentation: as asked, else 'flip' where the data's preset flips."""
        if asked is not None:
            return asked
        return "flip" if "flip" in (data.info.get("augment", ()) if self.augment is None else self.augment) else "none"

    def endpoints(self, prepared: Prepared, model, class_names=(), tta=None) -> dict:
        decoder = prepared.preprocessor
        endpoints = {
            "serving_default": (tf.TensorSpec([None], tf.string, name="image_bytes"), decoder),
            "serving_pixels": (tf.TensorSpec([None, None, None, decoder.channels], tf.float32, name="pixels"),
                               decoder.resize_pixels),
        }
        if class_names and explainable(model) is None:
            endpoints[EXPLAIN] = image_explainer(model, decoder, class_names, tta=tta)
        return endpoints

    def export_metadata(self, prepared: Prepared, model) -> dict:
        return {"kind": "image", "input": "image_bytes", **prepared.info}


def image_prepared(decoder: ImageDecoder, *, num_classes: int) -> Prepared:
    """The preprocessing of an image model: its decoder, and the model's data-given arguments."""
    return Prepared(preprocessor=decoder, raw_input="image_bytes", preprocess=decoder.resize_pixels,
                    model_args={"input_shape": (decoder.height, decoder.width, decoder.channels),
                                "num_classes": num_classes},
                    info={"image_size": [decoder.height, decoder.width], "channels": decoder.channels})


def check_activation_memory(image_size, *, batch_size: int | None, model_options: dict,
                            memory_bytes: int | None = None) -> int:
    """The bytes one training batch's first conv block needs; a one-line error when that exceeds the
    machine's physical memory.

    A simple lower bound, built from nothing: batch x H x W x first-layer filters x 4 bytes (float32)
    x 3 (the convolution, batch-norm and ReLU outputs are all kept for the backward pass). The
    batch is --batch-size, else 16 (the smallest default); the filters are --filters' first, else 32.
    """
    height, width = image_size
    filters = (model_options.get("filters") or (32,))[0]
    batch = batch_size or 16
    needed = batch * height * width * filters * 4 * 3
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > memory_bytes:
        raise CnnappError(
            f"--image-size: {height}x{width} images need at least {needed / 2**30:,.1f} GiB for the first conv "
            f"block's activations (batch {batch} x {height} x {width} x {filters} filters x 4 bytes x 3), more than "
            f"this machine's {memory_bytes / 2**30:,.1f} GiB of memory; use a smaller --image-size or --batch-size. "
            f"Received: image_size={height}x{width}")
    return needed
