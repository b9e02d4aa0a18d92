#!/usr/bin/env bash
# README "Bad input is one line": a photo folder with a truncated JPEG, an IDX folder whose images file
# carries a labels file's magic number. Run by make readme (docs/readme_outputs.py) in its scratch folder.
set -eu
source "$(dirname "$0")/_show.sh"
python - <<'PY'
import struct
from pathlib import Path
import numpy as np
from PIL import Image
rng = np.random.default_rng(0)
for label in ("cats", "dogs"):
    folder = Path("photos") / label
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(10, 20):
        Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(folder / f"{label[:-1]}.{i}.jpg")
cut = Path("photos/cats/cat.17.jpg")
cut.write_bytes(cut.read_bytes()[:400])                      # a download that stopped part-way
idx = Path("idx")
idx.mkdir(exist_ok=True)
labels = struct.pack(">II", 0x00000801, 3) + bytes([0, 1, 2])  # a labels file, under the images file's name
(idx / "train-images-idx3-ubyte").write_bytes(labels)
(idx / "train-labels-idx1-ubyte").write_bytes(labels)
PY
show "cnnapp train-image --data photos/            # with a truncated JPEG inside"
show "cnnapp train-image --data idx/               # an images file with a labels magic number"
