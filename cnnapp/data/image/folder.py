"""A folder with one subfolder per class of JPEG/PNG/BMP/GIF images.

With `train/` and `validation/` (or `test/`) subfolders, those are used: the validation/test
folder is the held-out evaluation set and 10% of train drives early stopping. Without them, a
seeded stratified split is made (`RawData.to_splits`). Every file is decoded once when loaded, through the same
`ImageDecoder` the export uses, so a corrupt file is named here rather than failing mid-epoch.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cnnapp.data import RawData
from cnnapp.data.image import IMAGE_SOURCES, ImageRequest
from cnnapp.errors import CnnappError, tf_error_reason

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
# Photos are read at 64x64 by default: on 400 cats-vs-dogs photos the default model reached 74% at
# 64x64 in a minute of training, where 128x128 had given 63% (docs/bench/image.md).
DEFAULT_FOLDER_SIZE = (64, 64)
# Small photo sets need more passes than the 20 epochs of larger data: a preset for folders
# (cats vs dogs: 74% after 40 one-cycle epochs, 63% after 20 plateau epochs at 128x128).
# Photo folders train in float32 even where `--precision auto` picks bfloat16 for other images:
# cats vs dogs fell from 73.5/71.0% (float32, seeds 1337/1338) to 66.0/70.5% in mixed_bfloat16, on
# 60-second runs where bfloat16 saves little (docs/bench/image.md).
# A held-out tenth of train/ is a few dozen photos, so choosing the "best" epoch on it is noise: the run keeps
# its last epoch, where one-cycle has annealed (cats vs dogs, two seeds: image_cnn 72.25% restored -> 73.25%
# kept, vgg 73.75% -> 74.75%), and, choosing nothing on validation, trains on all of train/ with validation/
# as its curve (vgg: 74.75% -> 76.75%; docs/bench/image.md).
FOLDER_TRAIN_PRESET = {"epochs": 40, "cpu_bfloat16": False, "restore_best": False}
# Photos get the VGG-style model (two 3x3 convs per block, global average pooling) rather than the plain
# image_cnn tuned on 28x28 grayscale: image_cnn underfits photos (training loss ~0.55 after 40 epochs) and
# vgg beat it on both seeds of cats vs dogs (74.75% against 73.25%, 1.5-2.5x the fit time).
FOLDER_MODEL = "vgg"


def class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def list_images(folder: Path, class_names: list[str] | None = None):
    """(paths, labels, class_names) for one folder of class subfolders."""
    classes = class_folders(folder)
    if class_names is None:
        class_names = [p.name for p in classes]
    paths, labels = [], []
    for p in classes:
        if p.name not in class_names:
            raise CnnappError(
                f"--data: class folder {p.name!r} is not among the training classes {class_names}. "
                f"Received: {folder}")
        for f in sorted(p.rglob("*")):
            if f.is_file() and not f.name.startswith("."):
                paths.append(f)
                labels.append(class_names.index(p.name))
    return paths, np.asarray(labels, dtype=np.int64), class_names


def peek_format(folder: Path) -> tuple[tuple[int, int], int]:
    """Size and channels to use by default: 64x64, RGB unless every sampled file is grayscale."""
    import tensorflow as tf
    channels = 1
    for path in sorted(folder.rglob("*"))[:200]:
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                shape = tf.io.extract_jpeg_shape(tf.io.read_file(str(path))) if path.suffix.lower() in (
                    ".jpg", ".jpeg") else tf.shape(tf.io.decode_image(tf.io.read_file(str(path)),
                                                                      expand_animations=False))
                if int(shape[-1]) >= 3:
                    channels = 3
                    break
            except Exception:  # a bad file is reported properly by decode_files
                continue
    return DEFAULT_FOLDER_SIZE, channels


def decode_files(paths, labels, *, decoder, skip_bad: bool, arg: str = "--data"):
    """Decode every file through `decoder`; bad files raise (or are skipped and counted)."""
    import tensorflow as tf
    images, kept, skipped = [], [], []
    for path, label in zip(paths, labels):
        try:
            data = tf.io.read_file(str(path))
            images.append(decoder.decode_one(data).numpy().round().astype(np.uint8))
            kept.append(label)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, ValueError) as e:
            reason = tf_error_reason(e)
            if not skip_bad:
                raise CnnappError(
                    f"{arg}: not a readable image ({reason}); pass --skip-bad-images to skip such files. "
                    f"Received: {path}") from None
            skipped.append(str(path))
    if skipped:
        log.warning("skipped %d unreadable file(s), e.g. %s", len(skipped), skipped[0])
    shape = (0, decoder.height, decoder.width, decoder.channels)
    x = np.stack(images) if images else np.zeros(shape, np.uint8)
    return x, np.asarray(kept, dtype=np.int64), skipped


def load_image_folder(folder: str | Path, *, decoder_factory, image_size=None, channels=None,
                      skip_bad: bool = False, arg: str = "--data") -> RawData:
    """RawData of decoded images; `decoder_factory(h, w, c)` builds the ImageDecoder."""
    folder = Path(folder)
    if not folder.exists():
        raise CnnappError(f"{arg}: no such folder. Received: {folder}")
    if not folder.is_dir():
        raise CnnappError(f"{arg}: expected a folder of class subfolders. Received: {folder}")
    names = {p.name.lower(): p for p in class_folders(folder)}
    train_dir = names.get("train")
    eval_dir = names.get("validation") or names.get("val") or names.get("test")
    root = train_dir or folder
    if not class_folders(root):
        raise CnnappError(f"{arg}: no class subfolders (one folder per class). Received: {root}")
    default_size, default_channels = peek_format(root)
    image_size = tuple(image_size or default_size)
    channels = channels or default_channels
    decoder = decoder_factory(image_size[0], image_size[1], channels)

    paths, labels, class_names = list_images(root)
    if not paths:
        raise CnnappError(f"{arg}: the class folders hold no files. Received: {root}")
    x, y, skipped = decode_files(paths, labels, decoder=decoder, skip_bad=skip_bad, arg=arg)
    out = RawData(x=x, y=y, class_names=class_names, name=folder.resolve().name,
                  description={"source": f"image folder {folder}", "skipped_files": len(skipped)},
                  info={"image_size": image_size, "channels": channels, "augment": ("flip", "crop"),
                        "train": FOLDER_TRAIN_PRESET, "model": FOLDER_MODEL})
    if train_dir is not None and eval_dir is not None:
        test_paths, test_labels, _ = list_images(eval_dir, class_names)
        out.x_test, out.y_test, skipped_test = decode_files(
            test_paths, test_labels, decoder=decoder, skip_bad=skip_bad, arg=arg)
        out.description["skipped_files"] += len(skipped_test)
        out.description["test"] = f"the {eval_dir.name}/ folder"
    return out


@IMAGE_SOURCES.register("folder", claims=lambda r: bool(r.data), priority=20)
def load_folder(request: ImageRequest) -> RawData:
    """--data FOLDER of class subfolders of images (train/ + validation/ or test/ when present)."""
    return load_image_folder(request.data, decoder_factory=request.decoder_factory, image_size=request.image_size,
                             channels=request.channels, skip_bad=request.skip_bad)
