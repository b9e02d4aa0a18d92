"""Images: a registered image source -> `ImageDecoder` (bytes or pixels -> float pixels 0..255)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import tensorflow as tf

from cnnapp.data import RawData, Splits
from cnnapp.data.image import ImageRequest, read_image_data
from cnnapp.export.explain import SIGNATURE as EXPLAIN, explainable, image_explainer
from cnnapp.preprocessing.image import ImageDecoder, build_augmenter
from cnnapp.tasks import Prepared


@dataclass(frozen=True)
class ImageTask:
    """>>> run(ImageTask(ImageRequest(dataset="digits")), train=TrainConfig(), model=ModelChoice())"""

    request: ImageRequest = ImageRequest()
    augment: tuple[str, ...] = ()         # names from cnnapp.preprocessing.image.AUGMENTATIONS
    kind = "image"

    def describe(self) -> dict:
        return {"data": self.request.data, "dataset": self.request.dataset, "data_dir": self.request.data_dir,
                "image_size": self.request.image_size, "channels": self.request.channels,
                "skip_bad_images": self.request.skip_bad, "augment": list(self.augment)}

    def load(self) -> tuple[RawData, str]:
        build_augmenter(self.augment)   # an unknown augmentation fails before any data is read
        return read_image_data(dataclasses.replace(
            self.request, decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c)))

    def prepare(self, data: RawData, splits: Splits, *, model_options: dict, seed: int) -> Prepared:
        (height, width), channels = data.info["image_size"], data.info["channels"]
        return image_prepared(ImageDecoder(height=height, width=width, channels=channels, name="image_decoder"),
                              num_classes=splits.num_classes)

    def augmenter(self, seed: int):
        return build_augmenter(self.augment, seed=seed)

    def endpoints(self, prepared: Prepared, model, class_names=()) -> dict:
        decoder = prepared.preprocessor
        endpoints = {
            "serving_default": (tf.TensorSpec([None], tf.string, name="image_bytes"), decoder),
            "serving_pixels": (tf.TensorSpec([None, None, None, decoder.channels], tf.float32, name="pixels"),
                               decoder.resize_pixels),
        }
        if class_names and explainable(model) is None:
            endpoints[EXPLAIN] = image_explainer(model, decoder, class_names)
        return endpoints

    def export_metadata(self, prepared: Prepared, model) -> dict:
        return {"kind": "image", "input": "image_bytes", **prepared.info}


def image_prepared(decoder: ImageDecoder, *, num_classes: int) -> Prepared:
    """The preprocessing of an image model: its decoder, and the model's data-given arguments."""
    return Prepared(preprocessor=decoder, raw_input="image_bytes", preprocess=decoder.resize_pixels,
                    model_args={"input_shape": (decoder.height, decoder.width, decoder.channels),
                                "num_classes": num_classes},
                    info={"image_size": [decoder.height, decoder.width], "channels": decoder.channels})
