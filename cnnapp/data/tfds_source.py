"""TensorFlow Datasets by name (`mnist`, `fashion_mnist`, `cifar10`, `imdb_reviews`, `glue/sst2`, ...).

Prepared data in `--data-dir` is used as it is. Otherwise the download is tried only after a
quick reachability check, so an offline machine gets a one-line error in seconds instead of
tfds's ~3 minutes of retries.
"""

from __future__ import annotations

import logging
import socket

import numpy as np

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
# Datasets whose files a Debian package installs, which cnnapp reads without TFDS (data/image/idx.py).
DEBIAN_PACKAGES = {"fashion_mnist": "dataset-fashion-mnist"}


def _online(timeout: float = 3.0) -> bool:
    try:
        with socket.create_connection(DOWNLOAD_HOST, timeout=timeout):
            return True
    except OSError:
        return False


def load_tfds_arrays(name: str, *, data_dir: str | None, feature: str, arg: str = "--dataset"):
    """Return {split: (x, y)} numpy arrays and the class names of a TFDS dataset."""
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - installed with cnnapp
        raise CnnappError(f"{arg}: tensorflow-datasets is not importable ({e}). Received: {name}") from None
    from absl import logging as absl_logging
    absl_logging.set_verbosity(absl_logging.ERROR)  # tfds logs every folder it probes
    try:
        builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises DatasetNotFoundError with a long listing
        raise CnnappError(
            f"{arg}: unknown TFDS dataset ({str(e).splitlines()[0][:160]}). Received: {name}") from None
    if not builder.is_prepared():
        where = data_dir or "~/tensorflow_datasets"
        package = (f" (or install its Debian package: apt-get install {DEBIAN_PACKAGES[name]})"
                   if name in DEBIAN_PACKAGES else "")
        if not _online():
            raise CnnappError(
                f"{arg}: TFDS dataset {name!r} is not in {where} and cannot be downloaded (no network); "
                f"prepare it elsewhere and pass --data-dir{package}. Received: {name}")
        try:
            builder.download_and_prepare()
        except Exception as e:
            raise CnnappError(
                f"{arg}: downloading TFDS dataset failed ({str(e).splitlines()[0][:160]}){package}. Received: {name}"
            ) from None
    info = builder.info
    label_feature = info.features["label"]
    class_names = list(getattr(label_feature, "names", None) or
                       [str(i) for i in range(label_feature.num_classes)])
    out = {}
    for split in info.splits:
        ds = builder.as_dataset(split=split, as_supervised=False)
        xs, ys = [], []
        for example in tfds.as_numpy(ds):
            value = example[feature]
            xs.append(value.decode("utf-8", "replace") if isinstance(value, bytes) else value)
            ys.append(int(example["label"]))
        ys = np.asarray(ys, dtype=np.int64)
        if (ys < 0).all():  # unlabelled test splits (GLUE) are of no use for evaluation
            continue
        out[split] = (np.stack(xs) if feature == "image" else np.asarray(xs, dtype=object), ys)
    return out, class_names
