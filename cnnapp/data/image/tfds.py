"""Any TFDS image data set by name (`--dataset cifar10`), from --data-dir or downloaded."""

from __future__ import annotations

from cnnapp.data import RawData
from cnnapp.data.image import IMAGE_SOURCES, ImageRequest
from cnnapp.errors import CnnappError


@IMAGE_SOURCES.register("tfds", claims=lambda r: bool(r.dataset) and not r.data, priority=90)
def load_tfds(request: ImageRequest) -> RawData:
    """--dataset NAME: a TensorFlow Datasets image set (its test split is the test set)."""
    from cnnapp.data.tfds_source import tfds_image_examples
    name = request.dataset
    parts, class_names, reader, info = tfds_image_examples(
        name, data_dir=request.data_dir, decoder_factory=request.decoder_factory, image_size=request.image_size,
        channels=request.channels)
    train = parts.get("train")
    if train is None:
        raise CnnappError(f"--dataset: TFDS dataset has no 'train' split. Received: {name}")
    out = RawData(x=train[0], y=train[1], class_names=class_names, name=name.replace("/", "_"), reader=reader,
                  description={"source": f"TFDS {name}, read through tf.data"},
                  info={**info, "augment": ("crop",) if "mnist" in name and "fashion" not in name else ("flip", "crop")})
    if "test" in parts:
        out.x_test, out.y_test = parts["test"]
        out.description["test"] = "the TFDS test split"
    return out
