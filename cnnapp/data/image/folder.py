"""A folder with one subfolder per class of JPEG/PNG/BMP/GIF/WebP images.

With `train/` and `validation/` (or `test/`) subfolders, those are used: the validation/test
folder is the held-out evaluation set and 10% of train drives early stopping. Without them, a
seeded stratified split is made (`RawData.to_splits`) on the list of files.

Nothing is decoded here: the source lists the files, checks each one's header and end (a few bytes,
so a broken file is named before training, in about a second for 25,000 photos), and hands out an
`ExampleReader` that decodes a path inside tf.data through the same `ImageDecoder` the export uses.
A file that passes the check and still fails to decode is named when it fails (`cnnapp.training.input`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from cnnapp.data import ExampleReader, RawData, decoded_pixels
from cnnapp.progress import Progress
from cnnapp.data.image import IMAGE_SOURCES, ImageRequest
from cnnapp.errors import CnnappError, tf_error_reason

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
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
            except Exception:  # a bad file is reported properly by check_files
                continue
    return DEFAULT_FOLDER_SIZE, channels


# (format, how its first bytes start, how a whole file ends)
def _whole(fmt: str, head: bytes, tail: bytes, size: int) -> bool:
    if fmt == "JPEG":
        return b"\xff\xd9" in tail                       # the end-of-image marker
    if fmt == "PNG":
        return b"IEND" in tail                            # the last chunk
    if fmt == "GIF":
        return b";" in tail[-4:]                          # the trailer byte 0x3B
    if fmt == "BMP":
        declared = int.from_bytes(head[2:6], "little")   # 0 is allowed by the format
        return declared == 0 or size >= declared
    return size >= int.from_bytes(head[4:8], "little") + 8   # WebP: the RIFF size


def image_format(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def check_file(path) -> str | None:
    """None when a file's first and last bytes are those of a whole image; else why not. Reads 64 bytes,
    decodes nothing. A file whose end looks wrong is decoded in full before it is called broken
    (some writers pad a JPEG after its end marker)."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(32)
            f.seek(max(0, size - 32))
            tail = f.read(32)
    except OSError as e:
        return f"cannot read it ({e.strerror})"
    if size == 0:
        return "the file is empty"
    fmt = image_format(head)
    if fmt is None:
        return "not a JPEG, PNG, GIF, BMP or WebP image"
    if not _whole(fmt, head, tail, size):
        import tensorflow as tf
        try:
            tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
        except (tf.errors.InvalidArgumentError, tf.errors.NotFoundError, ValueError) as e:
            return f"a truncated or damaged {fmt} ({tf_error_reason(e)})"
    return None


def check_files(paths, labels, *, skip_bad: bool, arg: str = "--data"):
    """(paths, labels, skipped) of the files whose header and end are those of an image; a bad file is a
    one-line error naming it, or under `skip_bad` skipped and counted."""
    kept, kept_labels, skipped = [], [], []
    progress = Progress("checking image files", total=len(paths), unit="files")
    for i, (path, label) in enumerate(zip(paths, labels)):
        reason = check_file(path)
        if reason is None:
            kept.append(str(path))
            kept_labels.append(label)
        elif not skip_bad:
            raise CnnappError(f"{arg}: not a readable image ({reason}); pass --skip-bad-images to skip such files. "
                              f"Received: {path}")
        else:
            skipped.append(str(path))
        progress.update(i + 1)
    progress.done()
    if skipped:
        log.warning("skipped %d unreadable file(s), e.g. %s", len(skipped), skipped[0])
    return np.asarray(kept, dtype=object), np.asarray(kept_labels, dtype=np.int64), skipped


def file_reader(decoder, *, skip_bad: bool = False) -> ExampleReader:
    """Decode one path to uint8 pixels through `decoder` (the export's ImageDecoder)."""
    import tensorflow as tf

    def decode(path):
        return decoded_pixels(decoder, tf.io.read_file(path))
    return ExampleReader(decode=decode, example_bytes=decoder.height * decoder.width * decoder.channels,
                         key={"image_size": [decoder.height, decoder.width], "channels": decoder.channels,
                              "decoder": f"ImageDecoder {decoder.resample}, rounded to uint8"},
                         what="image file", skip_bad=skip_bad)


def load_image_folder(folder: str | Path, *, decoder_factory, image_size=None, channels=None,
                      skip_bad: bool = False, arg: str = "--data") -> RawData:
    """RawData of image file paths; `decoder_factory(h, w, c)` builds the ImageDecoder that reads them."""
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
    x, y, skipped = check_files(paths, labels, skip_bad=skip_bad, arg=arg)
    out = RawData(x=x, y=y, class_names=class_names, name=folder.resolve().name, reader=file_reader(decoder, skip_bad=skip_bad),
                  description={"source": f"image folder {folder}", "skipped_files": len(skipped)},
                  info={"image_size": image_size, "channels": channels, "augment": ("flip", "crop"),
                        "train": FOLDER_TRAIN_PRESET, "model": FOLDER_MODEL})
    if train_dir is not None and eval_dir is not None:
        test_paths, test_labels, _ = list_images(eval_dir, class_names)
        out.x_test, out.y_test, skipped_test = check_files(test_paths, test_labels, skip_bad=skip_bad, arg=arg)
        out.description["skipped_files"] += len(skipped_test)
        out.description["test"] = f"the {eval_dir.name}/ folder"
    return out


@IMAGE_SOURCES.register("folder", claims=lambda r: bool(r.data), priority=20)
def load_folder(request: ImageRequest) -> RawData:
    """--data FOLDER of class subfolders of images (train/ + validation/ or test/ when present)."""
    return load_image_folder(request.data, decoder_factory=request.decoder_factory, image_size=request.image_size,
                             channels=request.channels, skip_bad=request.skip_bad)
