"""Image benchmark (issue 2): cnnapp's default image model on full Fashion-MNIST, cnnapp against the
keras-io `mnist_convnet` peer script on the same machine in the same run, and the image-folder path
on the cats-vs-dogs photos.

    make bench-image                      # installs Debian's dataset-fashion-mnist first (root)
    .venv/bin/python benchmarks/bench_image.py [--compare-epochs 5] [--repeats 2] [--skip ...]

Parts (each one a fresh process through the real CLI, `python -m cnnapp train-image ...`):
1. default   cnnapp's default model and settings on Fashion-MNIST (60k train of which 10% validates,
             10k test): test accuracy (target >= 0.925), wall time, images/s.
2. compare   the peer's exact network (Conv32-Pool-Conv64-Pool-Flatten-Dropout-Dense10, valid
             padding, no batch norm, no hidden dense layer: 34,826 parameters) trained for the same
             number of epochs by ../shared/peers/keras_plain.py and by cnnapp, alternating
             peer/cnnapp/cnnapp/peer... so that load from other jobs on the machine hits both alike.
             Throughput is training images per second over the epochs after the first (the
             first builds the graph and fills cnnapp's tf.data cache); both sides time an epoch
             from its start to its end, validation pass included, and train on the same 54,000 images.
3. folder    the image-folder path with its defaults (128x128 RGB, four conv blocks to an 8x8 map) on
             ../shared/data/image/cats_vs_dogs (train/ 400, validation/ 200), then `cnnapp predict`
             on one of its JPEGs through the exported SavedModel.
4. torch     optional: ../shared/peers/torch_cnn.py with --torch-python (a separate venv with torch).

Everything measured goes to benchmarks/results/image-<UTC time>.json (and image-latest.json); the
run directories and exports go to benchmarks/results/image-work/.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared"
FASHION = Path("/usr/share/datasets/fashion-mnist")
CATS_VS_DOGS = SHARED / "data" / "image" / "cats_vs_dogs"
TARGET_ACCURACY = 0.925
# The peer's network expressed with cnnapp's options.
PEER_ARCH = ["--filters", "32,64", "--kernel-sizes", "3", "--padding", "valid", "--pool-sizes", "2",
             "--no-batch-norm", "--conv-dropout", "0", "--dense-units", "none", "--dropout", "0.5"]


def log(msg: str) -> None:
    print(f"[{datetime.now(timezone.utc):%H:%M:%S}] {msg}", flush=True)


def loadavg() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def run(cmd: list[str], *, log_path: Path, env=None) -> tuple[float, str]:
    """Run a command, tee its output to log_path, and return (wall seconds, output)."""
    log("$ " + " ".join(map(str, cmd)))
    start = time.perf_counter()
    proc = subprocess.run([str(c) for c in cmd], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    log_path.write_text(proc.stdout)
    if proc.returncode != 0:
        sys.exit(f"command failed (exit {proc.returncode}), see {log_path}:\n{proc.stdout[-3000:]}")
    return wall, proc.stdout


def cnnapp_train(name: str, args: list[str], work: Path) -> dict:
    runs, models = work / "runs", work / "saved_models"
    shutil.rmtree(runs / name, ignore_errors=True)  # never resume an older run's backup
    cmd = [sys.executable, "-m", "cnnapp", "train-image", "--name", name, "--run-dir", runs,
           "--export-base", models, *args]
    load_before = loadavg()
    wall, out = run(cmd, log_path=work / f"{name}.log")
    metrics = json.loads((runs / name / "metrics.json").read_text())
    config = json.loads((runs / name / "config.json").read_text())
    ev = metrics["evaluated_on"]
    steady = metrics["epoch_seconds"][1:]
    train_n = config["resolved"]["splits"]["train"] if isinstance(config["resolved"]["splits"], dict) else None
    result = {
        "command": "cnnapp train-image --name " + name + " " + " ".join(map(str, args)),
        "params": config["resolved"]["params"],
        "train_examples": train_n,
        "evaluated_on": ev,
        "test_accuracy": metrics[ev]["accuracy"],
        "macro_f1": metrics[ev]["macro_f1"],
        "best_val_accuracy": metrics["best_val_accuracy"],
        "epochs_run": metrics["epochs_run"],
        "epoch_seconds": metrics["epoch_seconds"],
        "images_per_second_after_first": ([round(train_n / s, 1) for s in steady] if train_n else None),
        "examples_per_second": metrics["examples_per_second"],
        "train_seconds": metrics["train_seconds"],
        "process_wall_seconds": round(wall, 2),
        "loadavg_before": load_before,
        "loadavg_after": loadavg(),
        "run_dir": str(runs / name),
        "export": next((line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("exported: ")), None),
    }
    log(f"{name}: {ev} accuracy {result['test_accuracy']:.4f} in {result['epochs_run']} epochs, "
        f"{result['examples_per_second']} images/s (epochs after the first), wall {wall:.0f}s")
    return result


def peer_train(script: Path, epochs: int, work: Path, tag: str, python: str = sys.executable) -> dict:
    files = {k: FASHION / f"{v}.gz" for k, v in {
        "--images": "train-images-idx3-ubyte", "--labels": "train-labels-idx1-ubyte",
        "--test-images": "t10k-images-idx3-ubyte", "--test-labels": "t10k-labels-idx1-ubyte"}.items()}
    cmd = [python, script, *[x for kv in files.items() for x in kv], "--epochs", str(epochs)]
    load_before = loadavg()
    wall, out = run(cmd, log_path=work / f"{tag}.log")
    line = next(line for line in reversed(out.splitlines()) if line.startswith("{"))
    result = json.loads(line)
    ips = result["images_per_second_after_first"]
    result.update({
        "command": "python " + " ".join(str(c) for c in cmd[1:]),
        "examples_per_second": round(statistics.mean(ips), 1) if ips else None,
        "process_wall_seconds": round(wall, 2),
        "loadavg_before": load_before, "loadavg_after": loadavg(),
    })
    log(f"{tag}: test accuracy {result['test_accuracy']:.4f}, {result['examples_per_second']} images/s, "
        f"fit {result['train_wall_seconds']}s, wall {wall:.0f}s")
    return result


def summarize(runs: list[dict]) -> dict:
    ips = [r["examples_per_second"] for r in runs if r.get("examples_per_second")]
    fit = [r.get("train_seconds", r.get("train_wall_seconds")) for r in runs]
    return {"images_per_second_median": round(statistics.median(ips), 1) if ips else None,
            "images_per_second_each_run": ips,
            "fit_seconds_each_run": fit,
            "test_accuracy_each_run": [r["test_accuracy"] for r in runs]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--compare-epochs", type=int, default=5,
                   help="Epochs for each peer-vs-cnnapp comparison run (same for both).")
    p.add_argument("--repeats", type=int, default=2, help="Comparison runs per side (alternating).")
    p.add_argument("--skip", default="", help="Comma list of parts to skip: default,compare,folder.")
    p.add_argument("--torch-python", default=None,
                   help="A Python with torch installed (a separate venv) to also run peers/torch_cnn.py.")
    p.add_argument("--default-args", default="",
                   help="Extra train-image options for the default run (to try a candidate default).")
    a = p.parse_args()
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    if "default" not in skip or "compare" not in skip:
        if not (FASHION / "train-images-idx3-ubyte.gz").exists():
            sys.exit(f"{FASHION} not found: apt-get install -y dataset-fashion-mnist (make bench-image does it)")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / "image-work"
    work.mkdir(parents=True, exist_ok=True)
    import keras  # noqa: F401  (versions only; training happens in child processes)
    import tensorflow as tf
    report: dict = {
        "benchmark": "image", "started_utc": stamp,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "keras": keras.__version__, "loadavg_at_start": loadavg(),
                    "note": "2 cores shared with other engineers' TensorFlow jobs: timings are noisy"},
        "target_accuracy": TARGET_ACCURACY,
    }
    out_path = RESULTS / f"image-{stamp}.json"

    def save():
        report["finished_utc"] = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        text = json.dumps(report, indent=2)
        out_path.write_text(text)
        (RESULTS / "image-latest.json").write_text(text)

    if "default" not in skip:
        log("part 1: the default image model on full Fashion-MNIST")
        d = cnnapp_train("fashion_mnist_default", ["--dataset", "fashion_mnist", *a.default_args.split()], work)
        d["meets_target"] = d["test_accuracy"] >= TARGET_ACCURACY
        report["default"] = d
        save()

    if "compare" not in skip:
        log(f"part 2: the peer's network, {a.compare_epochs} epochs, peer script vs cnnapp, alternating")
        peer_script = SHARED / "peers" / "keras_plain.py"
        peers, ours = [], []
        for i in range(a.repeats):
            order = ("peer", "cnnapp") if i % 2 == 0 else ("cnnapp", "peer")
            for side in order:
                if side == "peer":
                    peers.append(peer_train(peer_script, a.compare_epochs, work, f"peer_keras_plain_{i + 1}"))
                else:
                    ours.append(cnnapp_train(
                        f"fashion_mnist_peer_arch_{i + 1}",
                        ["--dataset", "fashion_mnist", *PEER_ARCH, "--epochs", str(a.compare_epochs),
                         "--patience", str(a.compare_epochs + 1), "--no-export"], work))
                save_compare = {"epochs": a.compare_epochs, "keras_plain": peers, "cnnapp_peer_arch": ours}
                report["compare"] = save_compare
                save()
        s_peer, s_ours = summarize(peers), summarize(ours)
        report["compare"]["summary"] = {
            "keras_plain": s_peer, "cnnapp_peer_arch": s_ours,
            "cnnapp_over_peer_images_per_second": round(
                s_ours["images_per_second_median"] / s_peer["images_per_second_median"], 3),
        }
        if a.torch_python:
            report["compare"]["torch_cnn"] = peer_train(SHARED / "peers" / "torch_cnn.py", a.compare_epochs,
                                                        work, "peer_torch_cnn", python=a.torch_python)
        save()

    if "folder" not in skip:
        if not CATS_VS_DOGS.is_dir():
            log(f"part 3 skipped: {CATS_VS_DOGS} not found")
        else:
            log("part 3: image folder (cats_vs_dogs) with the default folder settings")
            f = cnnapp_train("cats_vs_dogs", ["--data", CATS_VS_DOGS], work)
            jpeg = sorted((CATS_VS_DOGS / "validation" / "dogs").glob("*.jpg"))[0]
            wall, out = run([sys.executable, "-m", "cnnapp", "predict", f["export"], jpeg, "--json"],
                            log_path=work / "cats_vs_dogs_predict.log")
            prediction = json.loads(out[out.index("{"):])["predictions"][0]
            f["predict_example"] = {"file": str(jpeg), "top": prediction["top"], "process_wall_seconds": round(wall, 2)}
            report["folder"] = f
            save()

    save()
    log(f"results: {out_path}")
    print(json.dumps({k: v for k, v in report.items() if k in ("default", "compare", "folder")}, indent=1)[:6000])
    if "default" in report and not report["default"]["meets_target"]:
        sys.exit(f"default model reached {report['default']['test_accuracy']:.4f} < {TARGET_ACCURACY}")


if __name__ == "__main__":
    main()
