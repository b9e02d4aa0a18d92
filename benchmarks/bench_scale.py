"""Scale benchmark (issue 5): 1 process vs 2 local workers, and precision / XLA on CPU.

    make bench-scale
    .venv/bin/python benchmarks/bench_scale.py [--epochs 3] [--image-train 12000] [--skip scale,image,text]

Every run is a fresh process through the real CLI (`python -m cnnapp ...`); numbers are read from
the chief's metrics.json: `examples_per_second` (training examples per second over the epochs
after the first, validation pass included) and the held-out accuracy.

1. scale   train-image on the embedded digits (1,295 train images), 1 process vs
           `cnnapp launch --workers 2` (CPU workers on loopback), same per-replica batch (64),
           so 2 workers take a global batch of 128 and half as many steps.
2. image   train-image with the default model (32,64 filters, batch norm, dense 128) on a
           Fashion-MNIST subset (the first --image-train training images and 2,000 test images,
           written as IDX files), for precision float32 vs mixed_bfloat16 and --jit off vs on.
3. text    train-text (Kim CNN-rand, default settings) on MR (../shared/data/text/mr, 10,662
           sentences, seeded 10% test) for the same precision / XLA choices.

Results go to benchmarks/results/scale-latest.json (and the runs to benchmarks/results/scale-work/).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import struct
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
WORK = RESULTS / "scale-work"
FASHION = Path("/usr/share/datasets/fashion-mnist")
SHARED = ROOT.parent / "shared" / "data"
CHOICES = [("float32", "off"), ("mixed_bfloat16", "off"), ("float32", "on")]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": "-1"}


def run(args: list[str], name: str) -> dict:
    """Run one CLI command; return the chief's metrics plus wall seconds and the command."""
    cmd = [sys.executable, "-m", "cnnapp", *args]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=ENV, cwd=ROOT)
    wall = time.perf_counter() - start
    (WORK / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see {WORK / (name + '.log')}")
    metrics = json.loads((WORK / "runs" / name / "metrics.json").read_text())
    ev = metrics["evaluated_on"]
    out = {"command": " ".join(["cnnapp", *args]), "wall_seconds": round(wall, 1),
           "examples_per_second": metrics["examples_per_second"], "epoch_seconds": metrics["epoch_seconds"],
           "accuracy": metrics[ev]["accuracy"], "evaluated_on": ev, "count": metrics[ev]["count"]}
    print(f"{name:28s} {out['examples_per_second']:>8} ex/s  acc {out['accuracy']:.4f}  wall {wall:.0f}s", flush=True)
    return out


def write_idx_subset(folder: Path, train: int, test: int) -> Path:
    """The first `train`/`test` Fashion-MNIST images and labels as IDX files cnnapp reads with --data."""
    import numpy as np
    folder.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("t10k", test)):
        with gzip.open(FASHION / f"{split}-images-idx3-ubyte.gz") as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)[:count]
        with gzip.open(FASHION / f"{split}-labels-idx1-ubyte.gz") as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)[:count]
        with gzip.open(folder / f"{split}-images-idx3-ubyte.gz", "wb") as f:
            f.write(struct.pack(">IIII", 2051, len(images), 28, 28) + images.tobytes())
        with gzip.open(folder / f"{split}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())
    return folder


def common(name: str, epochs: int) -> list[str]:
    return ["--name", name, "--epochs", str(epochs), "--patience", str(epochs), "--run-dir", str(WORK / "runs"),
            "--no-export"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-train", type=int, default=12000)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: scale,image,text")
    parser.add_argument("--text-data", choices=["mr", "demo"], default="mr",
                        help="demo: the embedded 500-sentence corpus (quick, when the machine is loaded)")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    flags = open("/proc/cpuinfo").read() if Path("/proc/cpuinfo").exists() else ""
    results = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "host": platform.node(),
               "cpus": os.cpu_count(), "load_average_at_start": os.getloadavg(),
               "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
               "epochs": args.epochs, "parts": {}}

    if "scale" not in skip:
        digits = ["train-image", "--dataset", "digits", "--batch-size", "64"]
        results["parts"]["scale"] = {
            "1 process": run([*digits, *common("scale_1proc", args.epochs)], "scale_1proc"),
            "2 workers": run(["launch", "--workers", "2", "--", *digits, *common("scale_2workers", args.epochs)],
                             "scale_2workers"),
        }
    if "image" not in skip:
        if FASHION.is_dir():
            data, source = write_idx_subset(WORK / "fashion-subset", args.image_train, 2000), \
                f"Fashion-MNIST, first {args.image_train} train / 2000 test images"
        else:
            data, source = SHARED / "image" / "mnist", "MNIST test images (../shared/data/image/mnist)"
        part = {"data": source}
        for precision, jit in CHOICES:
            name = f"image_{precision}_jit{jit}"
            part[f"{precision}, jit {jit}"] = run(["train-image", "--data", str(data), "--precision", precision,
                                                   "--jit", jit, *common(name, args.epochs)], name)
        results["parts"]["image"] = part
    if "text" not in skip:
        if args.text_data == "mr":
            part = {"data": "MR (rt-polarity, 10,662 sentences, seeded 10% test)"}
            data = ["--data", str(SHARED / "text" / "mr" / "rt-polarity.neg"),
                    "--data", str(SHARED / "text" / "mr" / "rt-polarity.pos"), "--encoding", "latin-1"]
        else:
            part, data = {"data": "the embedded demo corpus (500 templated sentences)"}, []
        for precision, jit in CHOICES:
            name = f"text_{precision}_jit{jit}"
            part[f"{precision}, jit {jit}"] = run(
                ["train-text", *data, "--precision", precision, "--jit", jit, *common(name, args.epochs)], name)
        results["parts"]["text"] = part

    results["load_average_at_end"] = os.getloadavg()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    for path in (RESULTS / f"scale-{stamp}.json", RESULTS / "scale-latest.json"):
        path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS / 'scale-latest.json'}")


if __name__ == "__main__":
    main()
