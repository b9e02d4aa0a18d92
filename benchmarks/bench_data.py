"""Data benchmark (issue 23): data of any size, cnnapp against Keras' own streaming folder pipeline.

    make bench-data
    .venv/bin/python benchmarks/bench_data.py [--photos 25000] [--image-size 128] [--sentences 1000000]
                                              [--skip photos,text] [--big-photos 0]

1. photos  a generated folder of N JPEG photos in two class folders (320-500 x 240-500 px, the size of
           the Kaggle dogs-vs-cats photos), at S px (128):
           - data path only: two epochs of the training dataset, no model, Keras'
             `image_dataset_from_directory` (batch 128, its 90%) against cnnapp's (`make_input` on the folder
             source: the same 90%, decoded through the export's ImageDecoder, cached as chosen);
           - training, two epochs of the same tiny network: cnnapp `cnnapp train-image --data F --epochs 2
             --image-size S --model image_cnn --filters 4 --dense-units none --no-batch-norm --augment none
             --no-export` (first run: the cache is built; second run: `--fresh`, the disk cache of the first
             run is reused) and ../shared/peers/keras_folder.py (batch 128).
           Measured: seconds from the process start to the end of the first training step (cnnapp: of the
           first graph call) or the first batch, epoch 1 and epoch 2 seconds, wall seconds, peak RSS (the
           child's own, from wait4).
2. text    a generated file of N `LABEL sentence` lines (~160 bytes each), `cnnapp train-text --epochs 1
           --feature-maps 16 --embedding-dim 32 --no-export`: first step, epoch time, peak RSS.
3. big     (--big-photos N, off by default) N photos at 224 px, one epoch: peak RSS.

The generated data stays in benchmarks/results/data-work/ (reused by the next run); results go to
benchmarks/results/data-latest.json. Run it with nothing else on the machine: the load average at the
start and end of every run is recorded beside its numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "data-work"
PEER = ROOT.parent / "shared" / "peers" / "keras_folder.py"
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}


# ---------------------------------------------------------------------------- generated data

_NOISE = None


def _photo(args) -> None:
    """One photo-like JPEG: a smooth colour gradient, a few soft shapes and sensor noise (compresses
    like a photo: ~25 KB at these sizes), the class tinting it a little so there is something to learn.
    The shapes are drawn at a quarter of the size and enlarged (it is the noise that costs the bytes)."""
    import numpy as np
    from PIL import Image
    global _NOISE
    if _NOISE is None:
        _NOISE = np.random.default_rng(os.getpid()).normal(0, 6, (520, 520, 3)).astype(np.float32)
    path, label, seed = args
    rng = np.random.default_rng(seed)
    w, h = int(rng.integers(320, 501)), int(rng.integers(240, 501))
    sw, sh = w // 4, h // 4
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float32)
    base = rng.uniform(40, 200, 3)
    slope = rng.uniform(-1.2, 1.2, (2, 3))
    img = base + xx[..., None] * slope[0] + yy[..., None] * slope[1]
    for _ in range(int(rng.integers(3, 7))):
        cx, cy, r = rng.uniform(0, sw), rng.uniform(0, sh), rng.uniform(5, 30)
        colour = rng.uniform(0, 255, 3)
        mask = np.exp(-(((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r)))[..., None]
        img = img * (1 - mask) + colour * mask
    img[..., 0 if label == 0 else 2] += 25
    small = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    big = np.asarray(small.resize((w, h), Image.BILINEAR), dtype=np.float32)
    oy, ox = int(rng.integers(0, 520 - h + 1)), int(rng.integers(0, 520 - w + 1))
    big = big + _NOISE[oy:oy + h, ox:ox + w]
    Image.fromarray(np.clip(big, 0, 255).astype(np.uint8)).save(path, quality=88)


def make_photos(folder: Path, n: int) -> Path:
    marker = folder / ".complete"
    if marker.exists() and marker.read_text() == str(n):
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    jobs = []
    for c, name in enumerate(("cats", "dogs")):
        (folder / name).mkdir(parents=True)
        jobs += [(folder / name / f"{name}.{i}.jpg", c, c * 10**7 + i) for i in range(n // 2)]
    start = time.perf_counter()
    with Pool(os.cpu_count()) as pool:
        pool.map(_photo, jobs, chunksize=64)
    marker.write_text(str(n))
    size = sum(p.stat().st_size for p in folder.rglob("*.jpg"))
    print(f"generated {n:,} photos ({size / 2**20:,.0f} MiB) in {time.perf_counter() - start:.0f}s", flush=True)
    return folder


WORDS_GOOD = ["moving", "beautiful", "brilliant", "funny", "warm", "smart", "tender", "gripping", "superb"]
WORDS_BAD = ["dull", "lifeless", "tedious", "clumsy", "boring", "flat", "messy", "stale", "pointless"]


def make_sentences(path: Path, n: int) -> Path:
    """N `LABEL sentence` lines: 12-40 Zipf-distributed words from a 50,000-word vocabulary and one
    word that carries the label (~160 bytes a line)."""
    import numpy as np
    done = path.with_suffix(".complete")
    if path.exists() and done.exists() and done.read_text() == str(n):
        return path
    rng = np.random.default_rng(1337)
    vocabulary = np.asarray([f"word{i}" for i in range(50_000)])
    p = 1 / np.arange(1, len(vocabulary) + 1)
    p /= p.sum()
    path.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with path.open("w", encoding="utf-8") as f:
        for first in range(0, n, 10_000):
            count = min(n, first + 10_000) - first
            lengths = rng.integers(12, 41, count)
            words = vocabulary[rng.choice(len(vocabulary), size=int(lengths.sum()), p=p)].tolist()
            rows, at = [], 0
            for i, length in zip(range(first, first + count), lengths):
                label = i % 2
                line = words[at:at + length]
                at += length
                line.insert(int(length) // 2, (WORDS_GOOD if label else WORDS_BAD)[i % 9])
                rows.append(f"{label} {' '.join(line)}\n")
            f.write("".join(rows))
    done.write_text(str(n))
    print(f"generated {n:,} sentences ({path.stat().st_size / 2**20:,.0f} MiB) in "
          f"{time.perf_counter() - start:.0f}s", flush=True)
    return path


# ---------------------------------------------------------------------------- measured runs

def measure(cmd: list[str], name: str) -> dict:
    """Run `cmd` as a child; its wall seconds, its own peak RSS (wait4) and the load around it."""
    load = os.getloadavg()[0]
    log = (WORK / f"{name}.log").open("w")
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=ENV, cwd=WORK)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    log.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{name} failed (exit {code}); see {WORK / (name + '.log')}")
    return {"command": " ".join(str(c) for c in cmd), "wall_seconds": round(wall, 1),
            "peak_rss_mb": round(usage.ru_maxrss / 1024), "load_before": round(load, 2),
            "load_after": round(os.getloadavg()[0], 2)}


def cnnapp(args: list[str], name: str) -> dict:
    out = measure([sys.executable, "-m", "cnnapp", *args, "--name", name, "--run-dir", str(WORK / "runs")], name)
    metrics = json.loads((WORK / "runs" / name / "metrics.json").read_text())
    out.update(first_step_seconds=metrics.get("first_step_seconds"), epoch_seconds=metrics["epoch_seconds"],
               accuracy=metrics[metrics["evaluated_on"]]["accuracy"])
    log = (WORK / f"{name}.log").read_text()
    out["cache_line"] = next((line.split("cache: ", 1)[1] for line in log.splitlines() if "cache: " in line), None)
    return out


def peer(folder: Path, size: int, name: str) -> dict:
    out = measure([sys.executable, str(PEER), "--data", str(folder), "--image-size", str(size), "--epochs", "2"], name)
    line = [ln for ln in (WORK / f"{name}.log").read_text().splitlines() if ln.startswith("{")][-1]
    result = json.loads(line)
    out.update(first_step_seconds=result["first_step_seconds"], epoch_seconds=result["epoch_seconds"])
    return out


def pipeline_child(kind: str, folder: str, size: int, epochs: int = 2) -> None:
    """Child mode: iterate the training dataset of a folder for `epochs` epochs with no model, so the data
    path alone is timed. Prints one JSON line (seconds to the first batch, each epoch's seconds)."""
    start = time.time()
    import tensorflow as tf
    if kind == "keras":
        import keras
        train, _ = keras.utils.image_dataset_from_directory(
            folder, image_size=(size, size), batch_size=128, seed=1337, validation_split=0.1, subset="both")
        train = train.prefetch(tf.data.AUTOTUNE)
    else:
        from cnnapp.data.image.folder import load_image_folder
        from cnnapp.preprocessing.image import ImageDecoder
        from cnnapp.training.input import make_input, plan_cache
        data = load_image_folder(folder, image_size=(size, size), channels=3,
                                 decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c))
        splits = data.to_splits(seed=1337, validate_on_test=True)
        cache = plan_cache(None, reader=splits.reader, examples=len(data.y), default_folder=WORK / "pipeline-cache")
        decoder = ImageDecoder(height=size, width=size, channels=3)
        train = make_input(splits.x_train, splits.y_train, reader=splits.reader, batch_size=128, shuffle_seed=1337,
                           preprocess=decoder.resize_pixels, cache=cache, label="train")
    first, seconds = None, []
    for _ in range(epochs):
        t = time.time()
        for _batch in train:
            first = first or round(time.time() - start, 2)
        seconds.append(round(time.time() - t, 2))
    print(json.dumps({"first_batch_seconds": first, "epoch_seconds": seconds}))


def pipeline(kind: str, folder: Path, size: int) -> dict:
    name = f"pipeline-{kind}"
    shutil.rmtree(WORK / "pipeline-cache", ignore_errors=True)
    out = measure([sys.executable, __file__, "--pipeline-child", kind, str(folder), str(size)], name)
    result = json.loads([ln for ln in (WORK / f"{name}.log").read_text().splitlines() if ln.startswith("{")][-1])
    out.update(first_step_seconds=result["first_batch_seconds"], epoch_seconds=result["epoch_seconds"])
    return out


def show(name: str, r: dict) -> None:
    epochs = ", ".join(f"{s:.1f}" for s in r.get("epoch_seconds", []))
    print(f"{name:26s} first step {r.get('first_step_seconds')}s  epochs [{epochs}]s  wall {r['wall_seconds']}s  "
          f"peak RSS {r['peak_rss_mb']} MB  (load {r['load_before']} -> {r['load_after']})", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=25_000)
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--sentences", type=int, default=1_000_000)
    p.add_argument("--big-photos", type=int, default=0, help="also N photos at 224 px, one epoch (e.g. 100000)")
    p.add_argument("--skip", default="", help="comma list of pipeline, photos, text")
    p.add_argument("--pipeline-child", nargs=3, metavar=("KIND", "FOLDER", "SIZE"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.pipeline_child:
        return pipeline_child(a.pipeline_child[0], a.pipeline_child[1], int(a.pipeline_child[2]))
    skip = set(filter(None, a.skip.split(",")))
    WORK.mkdir(parents=True, exist_ok=True)
    results = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.platform(),
               "cpus": os.cpu_count(), "runs": {}}
    # The peer's network exactly (conv 4 + ReLU, max pool, flatten, dense softmax: 32,882 parameters at 128 px),
    # without augmentation as the peer has none; cnnapp's recipe (one-cycle, label smoothing) stays.
    tiny = ["--model", "image_cnn", "--filters", "4", "--dense-units", "none", "--no-batch-norm", "--augment", "none",
            "--no-export"]
    folder = make_photos(WORK / f"photos-{a.photos}", a.photos) if not {"pipeline", "photos"} <= skip else None
    if "pipeline" not in skip:
        for kind in ("keras", "cnnapp"):
            results["runs"][f"data path only: {kind}"] = r = pipeline(kind, folder, a.image_size)
            show(f"data path only: {kind}", r)
    if "photos" not in skip:
        shutil.rmtree(WORK / "runs" / "photos", ignore_errors=True)
        runs = {
            "keras_image_dataset_from_directory": lambda: peer(folder, a.image_size, "keras-peer"),
            "cnnapp (cache built)": lambda: cnnapp(["train-image", "--data", str(folder), "--epochs", "2",
                                                    "--image-size", str(a.image_size), *tiny], "photos"),
            "cnnapp (cache reused)": lambda: cnnapp(["train-image", "--data", str(folder), "--epochs", "2",
                                                     "--image-size", str(a.image_size), *tiny, "--fresh"], "photos"),
        }
        for name, fn in runs.items():
            results["runs"][name] = r = fn()
            show(name, r)
    if "text" not in skip:
        path = make_sentences(WORK / f"sentences-{a.sentences}.txt", a.sentences)
        shutil.rmtree(WORK / "runs" / "sentences", ignore_errors=True)
        results["runs"]["cnnapp train-text"] = r = cnnapp(
            ["train-text", "--data", str(path), "--epochs", "1", "--feature-maps", "16", "--embedding-dim", "32",
             "--no-export"], "sentences")
        show("cnnapp train-text", r)
    if a.big_photos:
        folder = make_photos(WORK / f"photos-{a.big_photos}", a.big_photos)
        shutil.rmtree(WORK / "runs" / "big", ignore_errors=True)
        results["runs"]["cnnapp 224 px, one epoch"] = r = cnnapp(
            ["train-image", "--data", str(folder), "--epochs", "1", "--image-size", "224", *tiny], "big")
        show("cnnapp 224 px", r)
    out = RESULTS / "data-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
