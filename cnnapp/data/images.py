"""Resolve `--data PATH` / `--dataset NAME` for images to in-memory `Splits`.

Sources, by name (a registry, so `--dataset` errors can list them):
- ``digits``: the embedded default, scikit-learn's handwritten digits (offline);
- ``fashion_mnist`` / ``mnist``: IDX files from Debian's dataset-fashion-mnist (or --data-dir) when
  present, else TFDS;
- any other name: TFDS.
A path is an IDX folder when it holds train-images-idx3-ubyte files, else a folder of class folders.
"""

from __future__ import annotations

from pathlib import Path

from cnnapp.data import Splits, make_splits
from cnnapp.data import digits as digits_source
from cnnapp.data import idx as idx_source
from cnnapp.data.image_folder import load_image_folder
from cnnapp.data.tfds_source import load_tfds_arrays
from cnnapp.errors import CnnappError

EMBEDDED = "digits"


def load_image_data(*, data: str | None, dataset: str | None, data_dir: str | None,
                    image_size, channels, skip_bad: bool, seed: int, decoder_factory):
    """Return (splits, image_size, channels, source_name)."""
    if data and dataset:
        raise CnnappError(f"--data and --dataset are exclusive. Received: data={data}, dataset={dataset}")
    if data:
        path = Path(data)
        if path.is_dir() and idx_source.has_idx_files(path):
            splits = idx_source.load_idx_folder(path, seed=seed)
            return _finish(splits, image_size, channels, path.name)
        splits, size, ch = load_image_folder(path, decoder_factory=decoder_factory,
                                             image_size=image_size, channels=channels,
                                             skip_bad=skip_bad, seed=seed)
        return splits, size, ch, path.resolve().name
    name = dataset or EMBEDDED
    if name == EMBEDDED:
        return _finish(digits_source.load_digits_splits(seed=seed), image_size, channels, name)
    if name == "fashion_mnist":
        for folder in filter(None, [data_dir and Path(data_dir) / "fashion-mnist", data_dir and Path(data_dir),
                                    idx_source.DEBIAN_FASHION_MNIST]):
            if Path(folder).is_dir() and idx_source.has_idx_files(Path(folder)):
                splits = idx_source.load_idx_folder(folder, class_names=idx_source.FASHION_MNIST_CLASSES,
                                                    seed=seed)
                return _finish(splits, image_size, channels, name)
    arrays, class_names = load_tfds_arrays(name, data_dir=data_dir, feature="image")
    train = arrays.get("train")
    if train is None:
        raise CnnappError(f"--dataset: TFDS dataset has no 'train' split. Received: {name}")
    test = arrays.get("test")
    splits = make_splits(train[0], train[1], class_names,
                         x_test=test[0] if test else None, y_test=test[1] if test else None,
                         seed=seed, description={"source": f"TFDS {name}",
                                                 "test": "the TFDS test split" if test else None})
    return _finish(splits, image_size, channels, name.replace("/", "_"))


def _finish(splits: Splits, image_size, channels, name):
    """In-memory sources keep their native size and channels unless asked otherwise."""
    native = splits.x_train.shape[1:3]
    data_channels = splits.x_train.shape[3]
    channels = channels or data_channels
    if channels != data_channels:
        raise CnnappError(
            f"--channels: this dataset has {data_channels} channel(s). Received: channels={channels}")
    return splits, tuple(image_size or native), channels, name
