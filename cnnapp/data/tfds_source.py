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


def prepared_builder(name: str, *, data_dir: str | None, arg: str = "--dataset"):
    """The TFDS builder of `name`, prepared (from --data-dir, or downloaded when the network allows)."""
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
    return builder


def class_names_of(builder) -> list[str]:
    label_feature = builder.info.features["label"]
    return list(getattr(label_feature, "names", None) or [str(i) for i in range(label_feature.num_classes)])


def load_tfds_arrays(name: str, *, data_dir: str | None, feature: str, arg: str = "--dataset"):
    """Return {split: (x, y)} numpy arrays and the class names of a TFDS dataset (sentences: they are
    held as strings like any file of sentences; images go through `tfds_image_examples` instead)."""
    import tensorflow_datasets as tfds
    builder = prepared_builder(name, data_dir=data_dir, arg=arg)
    info = builder.info
    class_names = class_names_of(builder)
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


def split_labels(builder, split: str, feature: str) -> np.ndarray:
    """The labels of one split, read through tf.data with `feature` left encoded (nothing decoded)."""
    import tensorflow as tf
    import tensorflow_datasets as tfds
    ds = builder.as_dataset(split=split, shuffle_files=False, decoders={feature: tfds.decode.SkipDecoding()})
    labels = ds.map(lambda ex: ex["label"], num_parallel_calls=tf.data.AUTOTUNE).batch(8192)
    return np.concatenate([b.numpy() for b in labels] or [np.zeros(0, np.int64)]).astype(np.int64)


def tfds_image_examples(name: str, *, data_dir: str | None, decoder_factory, image_size=None, channels=None,
                        arg: str = "--dataset"):
    """(RawData parts, class names, info) of a TFDS image set as keys ("train:000000017") and an
    `ExampleReader` that streams a part's examples from `builder.as_dataset` in key order: nothing is
    decoded here and no image is held in NumPy. Images of one fixed size are decoded as stored; images of
    varying sizes (or an asked --image-size) go through the export's ImageDecoder."""
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from cnnapp.data import ExampleReader, decoded_pixels
    builder = prepared_builder(name, data_dir=data_dir, arg=arg)
    feature = builder.info.features["image"]
    native = tuple(feature.shape)              # (H, W, C), None where sizes vary
    stored_channels = native[2] or 3
    channels = channels or stored_channels
    if channels != stored_channels:
        raise CnnappError(f"--channels: this dataset has {stored_channels} channel(s). Received: channels={channels}")
    size = tuple(image_size or (native[:2] if None not in native[:2] else (64, 64)))
    resize = size != native[:2]
    decoder = decoder_factory(size[0], size[1], channels) if resize else None

    def decode_bytes(data):
        if decoder is not None:
            return decoded_pixels(decoder, data)
        image = tf.io.decode_image(data, channels=channels, expand_animations=False)
        return tf.reshape(image, (size[0], size[1], channels))

    def stream(keys):
        """The decoded examples of `keys` (one split, ascending), read from the split's records in order."""
        keys = np.asarray(keys).astype(str)
        split = keys[0].split(":")[0] if len(keys) else "train"
        wanted = np.zeros(builder.info.splits[split].num_examples, dtype=bool)
        wanted[[int(k.split(":")[1]) for k in keys]] = True
        mask = tf.constant(wanted)
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
        ds = ds.enumerate().filter(lambda i, ex: tf.gather(mask, i)).map(
            lambda i, ex: decode_bytes(ex["image"]), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        return ds.apply(tf.data.experimental.assert_cardinality(len(keys)))

    reader = ExampleReader(decode=None, stream=stream, files=False, example_bytes=size[0] * size[1] * channels,
                           key={"tfds": name, "version": str(builder.info.version), "image_size": list(size),
                                "channels": channels}, what="TFDS image")
    parts = {}
    for split in builder.info.splits:
        labels = split_labels(builder, split, "image")
        if len(labels) and (labels < 0).all():
            continue
        parts[split] = (np.asarray([f"{split}:{i:09d}" for i in range(len(labels))], dtype=object), labels)
    return parts, class_names_of(builder), reader, {"image_size": size, "channels": channels}
