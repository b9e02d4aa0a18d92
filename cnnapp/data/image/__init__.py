"""Image sources: what the user has -> `RawData` of uint8 images [N, H, W, C], or of image file paths
with the `ExampleReader` that decodes them in tf.data (folders).

One file per source in this package, each registered in `IMAGE_SOURCES` with the requests it
claims (see `cnnapp.data.SourceRegistry`): the embedded digits, IDX folders (and Debian's
Fashion-MNIST), folders of class subfolders, and any TFDS name. An in-memory source keeps its
native size and channels (`RawData.info`); an image folder is decoded at the requested size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from cnnapp.data import RawData, SourceRegistry
from cnnapp.errors import CnnappError

IMAGE_SOURCES = SourceRegistry(__name__, "image")


@dataclass(frozen=True)
class ImageRequest:
    """The data options of train-image, as given. `decoder_factory(h, w, c)` builds the
    preprocessing's ImageDecoder for sources that decode files (data never imports preprocessing)."""

    data: str | None = None
    dataset: str | None = None
    data_dir: str | None = None
    image_size: tuple[int, int] | None = None
    channels: int | None = None
    skip_bad: bool = False
    decoder_factory: Callable | None = None


def read_image_data(request: ImageRequest) -> tuple[RawData, str]:
    """(RawData, source name) for the options; `info` holds the image size and channels."""
    if request.data and request.dataset:
        raise CnnappError(f"--data and --dataset are exclusive. Received: data={request.data}, "
                          f"dataset={request.dataset}")
    data, source = IMAGE_SOURCES.read(request)
    if data.reader is not None:   # files, decoded at the size and channels the source chose
        native_size, native_channels = tuple(data.info["image_size"]), int(data.info["channels"])
    else:
        native_size, native_channels = tuple(data.x.shape[1:3]), int(data.x.shape[3])
    channels = request.channels or native_channels
    if channels != native_channels:
        raise CnnappError(f"--channels: this dataset has {native_channels} channel(s). Received: channels={channels}")
    data.info.update(image_size=tuple(request.image_size or data.info.get("image_size") or native_size),
                     channels=channels)
    data.info.setdefault("augment", ())   # a source's augmentation preset: flips only where the data allows
    return data, source
