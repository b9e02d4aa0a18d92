"""Image benchmark: time to a good image model. cnnapp's default on full Fashion-MNIST against the
keras-io and PyTorch peer scripts in the same run, the peers' exact network in all three for
images/s, and the image-folder default on the cats-vs-dogs photos.

    make bench-image            # installs Debian's dataset-fashion-mnist (root) and a torch venv, then runs all
    .venv/bin/python benchmarks/bench_image.py [--seeds 1337,1338] [--compare-epochs 5] [--repeats 2]
        [--skip fashion,compare,folder] [--torch-python PATH | --no-torch] [--default-args '...']

Parts (each run a fresh process: `python -m cnnapp train-image ...`, the peers' own scripts), every
part alternating its programs so that load from anything else on the machine hits all alike:
1. fashion   per seed: cnnapp's default (`--dataset fashion_mnist`, no other option), then
             ../shared/peers/keras_plain.py and ../shared/peers/torch_cnn.py for --compare-epochs
             epochs (the order rotates each round). cnnapp: wall seconds to 90/91/92/93% validation
             accuracy, test accuracy, fit seconds. Targets: mean test >= 0.93 with <= 600 s of fit each.
2. compare   the peers' exact network (Conv32-Pool-Conv64-Pool-Flatten-Dropout-Dense10, valid padding,
             no batch norm: 34,826 parameters) in all three, the same epochs, rotating: training
             images/s over the epochs after the first. Targets: cnnapp >= 1.3x keras_plain, >= 1.5x torch.
3. folder    per seed: `cnnapp train-image --data ../shared/data/image/cats_vs_dogs` (its validation/
             folder is the held-out set), then `cnnapp predict` on a JPEG. Target: mean >= 0.75.

torch is never a cnnapp dependency: the benchmark makes its own venv (benchmarks/results/torch-venv,
torch 2.13.0+cpu) unless --torch-python names one or --no-torch is given. Everything measured goes
to benchmarks/results/image-<UTC time>.json (and image-latest.json) with the load average before and
after every run; run directories, exports and logs go to benchmarks/results/image-work/.
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
TARGETS = {"fashion_test_accuracy": 0.93, "fashion_fit_seconds": 600, "over_keras_plain": 1.3, "over_torch": 1.5,
           "cats_vs_dogs_accuracy": 0.75}
LEVELS = "0.9,0.91,0.92,0.93"
TORCH_VENV = RESULTS / "torch-venv"
TORCH_SPEC = "torch==2.13.0+cpu"
# The peers' network and recipe expressed with cnnapp's options (Adam 1e-3, batch 128, no augmentation,
# plain cross-entropy; a constant rate unless validation loss stalls).
PEER_ARCH = ["--model", "image_cnn", "--filters", "32,64", "--kernel-sizes", "3", "--padding", "valid",
             "--pool-sizes", "2", "--no-batch-norm", "--conv-dropout", "0", "--dense-units", "none", "--dropout", "0.5",
             "--augment", "none", "--label-smoothing", "0", "--lr-schedule", "plateau", "--batch-size", "128"]


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
        "time_to_accuracy": metrics.get("time_to_accuracy"),
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


def torch_python(a) -> str | None:
    """A Python with torch: --torch-python, or a venv this benchmark makes (never cnnapp's .venv)."""
    if a.no_torch:
        return None
    if a.torch_python:
        return a.torch_python
    python = TORCH_VENV / "bin" / "python"
    if not python.exists():
        log(f"making {TORCH_VENV} with {TORCH_SPEC} (once)")
        subprocess.run([sys.executable, "-m", "venv", TORCH_VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", TORCH_SPEC, "numpy"], check=True)
    return str(python)


def rotate(items: list, i: int) -> list:
    return items[i % len(items):] + items[:i % len(items)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="1337,1338", help="Seeds of the cnnapp default runs (fashion and folder).")
    p.add_argument("--compare-epochs", type=int, default=5, help="Epochs of every peer run and of cnnapp's peer-net runs.")
    p.add_argument("--repeats", type=int, default=2, help="Rounds of the three-way throughput comparison.")
    p.add_argument("--skip", default="", help="Comma list of parts to skip: fashion,compare,folder.")
    p.add_argument("--torch-python", default=None, help="A Python with torch (else a venv made here).")
    p.add_argument("--no-torch", action="store_true", help="Leave out the PyTorch peer.")
    p.add_argument("--default-args", default="", help="Extra train-image options (to try a candidate default).")
    a = p.parse_args()
    skip = {s.strip() for s in a.skip.split(",") if s.strip()}
    seeds = [int(s) for s in a.seeds.split(",")]
    if not {"fashion", "compare"} <= skip and not (FASHION / "train-images-idx3-ubyte.gz").exists():
        sys.exit(f"{FASHION} not found: apt-get install -y dataset-fashion-mnist (make bench-image does it)")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    work = RESULTS / "image-work"
    work.mkdir(parents=True, exist_ok=True)
    torch = torch_python(a) if not {"fashion", "compare"} <= skip else None
    import keras  # noqa: F401  (versions only; training happens in child processes)
    import tensorflow as tf
    report: dict = {
        "benchmark": "image", "started_utc": stamp, "targets": TARGETS,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "tensorflow": tf.__version__, "keras": keras.__version__, "loadavg_at_start": loadavg()},
    }
    out_path = RESULTS / f"image-{stamp}.json"

    def save():
        report["finished_utc"] = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        text = json.dumps(report, indent=2)
        out_path.write_text(text)
        (RESULTS / "image-latest.json").write_text(text)

    peers = {"keras_plain": (SHARED / "peers" / "keras_plain.py", sys.executable)}
    if torch:
        peers["torch_cnn"] = (SHARED / "peers" / "torch_cnn.py", torch)

    if "fashion" not in skip:
        log("part 1: cnnapp's default on full Fashion-MNIST, and the peers, rotating")
        part = report["fashion"] = {"cnnapp_default": [], **{k: [] for k in peers}}
        for i, seed in enumerate(seeds):
            for who in rotate(["cnnapp", *peers], i):
                if who == "cnnapp":
                    part["cnnapp_default"].append(cnnapp_train(
                        f"fashion_default_seed{seed}", ["--dataset", "fashion_mnist", "--seed", str(seed),
                                                         "--time-to", LEVELS, *a.default_args.split()], work))
                else:
                    script, python = peers[who]
                    part[who].append(peer_train(script, a.compare_epochs, work, f"{who}_fashion_{i + 1}", python=python))
                save()
        runs = part["cnnapp_default"]
        part["summary"] = {
            "cnnapp_default_mean_test_accuracy": round(statistics.mean(r["test_accuracy"] for r in runs), 4),
            "cnnapp_default_fit_seconds": [r["train_seconds"] for r in runs],
            "meets_targets": statistics.mean(r["test_accuracy"] for r in runs) >= TARGETS["fashion_test_accuracy"]
            and max(r["train_seconds"] for r in runs) <= TARGETS["fashion_fit_seconds"],
            **{f"{k}_test_accuracy": [r["test_accuracy"] for r in part[k]] for k in peers},
        }
        save()

    if "compare" not in skip:
        log(f"part 2: the peers' network in all three, {a.compare_epochs} epochs, rotating")
        part = report["compare"] = {"epochs": a.compare_epochs, "cnnapp_peer_arch": [], **{k: [] for k in peers}}
        for i in range(a.repeats):
            for who in rotate(["cnnapp", *peers], i):
                if who == "cnnapp":
                    part["cnnapp_peer_arch"].append(cnnapp_train(
                        f"fashion_peer_arch_{i + 1}", ["--dataset", "fashion_mnist", *PEER_ARCH, "--epochs",
                                                       str(a.compare_epochs), "--patience", str(a.compare_epochs + 1),
                                                       "--no-export"], work))
                else:
                    script, python = peers[who]
                    part[who].append(peer_train(script, a.compare_epochs, work, f"{who}_compare_{i + 1}", python=python))
                save()
        ours = summarize(part["cnnapp_peer_arch"])
        part["summary"] = {"cnnapp_peer_arch": ours, **{k: summarize(part[k]) for k in peers}}
        for k in peers:
            part["summary"][f"cnnapp_over_{k}_images_per_second"] = round(
                ours["images_per_second_median"] / part["summary"][k]["images_per_second_median"], 3)
        save()

    if "folder" not in skip:
        if not CATS_VS_DOGS.is_dir():
            log(f"part 3 skipped: {CATS_VS_DOGS} not found")
        else:
            log("part 3: the image-folder default on cats_vs_dogs")
            runs = []
            for seed in seeds:
                f = cnnapp_train(f"cats_vs_dogs_seed{seed}", ["--data", CATS_VS_DOGS, "--seed", str(seed)], work)
                runs.append(f)
                report["folder"] = {"runs": runs}
                save()
            jpeg = sorted((CATS_VS_DOGS / "validation" / "dogs").glob("*.jpg"))[0]
            wall, out = run([sys.executable, "-m", "cnnapp", "predict", runs[0]["export"], jpeg, "--json"],
                            log_path=work / "cats_vs_dogs_predict.log")
            prediction = json.loads(out[out.index("{"):])["predictions"][0]
            report["folder"]["predict_example"] = {"file": str(jpeg), "top": prediction["top"],
                                                   "process_wall_seconds": round(wall, 2)}
            report["folder"]["mean_accuracy"] = round(statistics.mean(r["test_accuracy"] for r in runs), 4)
            save()

    save()
    log(f"results: {out_path}")
    print(json.dumps({k: v.get("summary", v.get("mean_accuracy")) for k, v in report.items()
                      if k in ("fashion", "compare", "folder")}, indent=1))


if __name__ == "__main__":
    main()
