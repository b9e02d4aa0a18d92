"""Where does cnnapp's training time go, against the keras-io peer? One process, one network (the
peer's 34,826-parameter Conv32-Pool-Conv64-Pool-Dropout-Dense10), Fashion-MNIST, one epoch per
measurement, the variants alternating round after round so that load from other jobs hits all alike:

  peer_numpy       model.fit on NumPy arrays, validation on NumPy arrays, no callbacks, verbose 0
                   (what ../shared/peers/keras_plain.py does)
  cnnapp_data      cnnapp's tf.data pipeline (cnnapp.training.loop.make_dataset), no callbacks, verbose 0
  cnnapp_full      cnnapp_data + cnnapp's callback list (build_callbacks) + one line per epoch (verbose 2)
  cnnapp_no_tb     cnnapp_full without the TensorBoard callback

    .venv/bin/python benchmarks/profile_image_pipeline.py [--rounds 3]

Writes benchmarks/results/image-profile-<UTC time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from cnnapp.config import TrainConfig  # noqa: E402
from cnnapp.data.image.idx import DEBIAN_FASHION_MNIST, load_idx_folder  # noqa: E402
from cnnapp.models.image_cnn import build_image_cnn  # noqa: E402
from cnnapp.preprocessing.image import ImageDecoder  # noqa: E402
from cnnapp.training.callbacks import build_callbacks  # noqa: E402
from cnnapp.training.input import make_input as make_dataset  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def peer_model():
    return build_image_cnn(input_shape=(28, 28, 1), num_classes=10, filters=(32, 64), padding="valid",
                           batch_norm=False, dense_units=(), dropout=0.5)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    keras.utils.set_random_seed(0)
    s = load_idx_folder(DEBIAN_FASHION_MNIST).to_splits(seed=1337)
    n = len(s.y_train)
    x_np = s.x_train.astype("float32")  # the model rescales /255 itself, like the peer's manual /255
    xv_np = s.x_val.astype("float32")
    decoder = ImageDecoder(height=28, width=28, channels=1)
    train_ds = make_dataset(s.x_train, s.y_train, batch_size=128, preprocess=decoder.resize_pixels, shuffle_seed=1)
    val_ds = make_dataset(s.x_val, s.y_val, batch_size=128, preprocess=decoder.resize_pixels)

    models = {}
    for name in ("peer_numpy", "cnnapp_data", "cnnapp_full", "cnnapp_no_tb"):
        m = peer_model()
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        models[name] = m

    def run(name, tmp):
        m = models[name]
        if name == "peer_numpy":
            kw = dict(x=x_np, y=s.y_train, batch_size=128, validation_data=(xv_np, s.y_val), verbose=0)
        else:
            kw = dict(x=train_ds, validation_data=val_ds, shuffle=False, verbose=0)
            if name != "cnnapp_data":
                run_dir = Path(tmp) / name
                run_dir.mkdir(parents=True, exist_ok=True)  # as train_classifier does
                cbs = build_callbacks(TrainConfig(name="p"), run_dir, resuming=False)
                if name == "cnnapp_no_tb":
                    cbs = [c for c in cbs if not isinstance(c, keras.callbacks.TensorBoard)]
                kw.update(callbacks=cbs, verbose=2)
        start = time.perf_counter()
        m.fit(epochs=1, **kw)
        return time.perf_counter() - start

    times: dict[str, list[float]] = {k: [] for k in models}
    with tempfile.TemporaryDirectory() as tmp:
        for name in models:  # warm-up: graph tracing and the tf.data cache, not measured
            run(name, tmp + "/warm")
        for r in range(a.rounds):
            order = list(models) if r % 2 == 0 else list(reversed(models))
            for name in order:
                t = run(name, f"{tmp}/{r}")
                times[name].append(round(t, 3))
                print(f"round {r + 1} {name}: {t:.2f}s ({n / t:.0f} images/s)", flush=True)
    out = {
        "started_loadavg": os.getloadavg(), "train_images": n, "validation_images": len(s.y_val),
        "epoch_seconds": times,
        "images_per_second_median": {k: round(n / statistics.median(v), 1) for k, v in times.items()},
    }
    print(json.dumps(out["images_per_second_median"], indent=1))
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"image-profile-{stamp}.json").write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
