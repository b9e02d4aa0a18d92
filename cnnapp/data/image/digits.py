"""The embedded default: scikit-learn's 1,797 real handwritten digits (8x8, no network needed).

Run as a module to write a few of them as PNG files for `cnnapp predict`:
    python -m cnnapp.data.image.digits --write-samples DIR      # prints the paths
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from cnnapp.data import RawData
from cnnapp.data.image import IMAGE_SOURCES


def load_digit_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits
    digits = load_digits()
    # Pixel values are 0..16 ink counts; stretch them to 0..255 like any 8-bit grayscale image.
    x = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    return x, digits.target.astype(np.int64)


@IMAGE_SOURCES.register("digits", claims=lambda r: not r.data and r.dataset in (None, "digits"), priority=0)
def load_digits(request=None) -> RawData:
    """The embedded default: scikit-learn's 1,797 real 8x8 handwritten digits (offline)."""
    x, y = load_digit_arrays()
    return RawData(x=x, y=y, class_names=[str(i) for i in range(10)], name="digits", test_fraction=0.2,
                   description={"source": "scikit-learn load_digits (1,797 real 8x8 digits, embedded)"},
                   info={"augment": ()})   # no flips (a mirrored 3 is no digit); a 1-pixel shift of 8x8 cost 1%


def write_samples(folder: str | Path, count: int = 4) -> list[Path]:
    """Write `count` digits as PNG (one per class, from the end of the set) and return the paths."""
    import tensorflow as tf
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    x, y = load_digit_arrays()
    paths = []
    for digit in range(count):
        i = int(np.flatnonzero(y == digit)[-1])
        path = folder / f"digit-{digit}.png"
        path.write_bytes(tf.io.encode_png(x[i]).numpy())
        paths.append(path)
    return paths


if __name__ == "__main__":
    import os

    from cnnapp.quiet import hide_tensorflow_startup_log
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    hide_tensorflow_startup_log()   # `make demo` runs this between cnnapp commands: as quiet as they are
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write-samples", required=True, metavar="DIR")
    parser.add_argument("--count", type=int, default=4)
    args = parser.parse_args()
    print(" ".join(str(p) for p in write_samples(args.write_samples, args.count)))
