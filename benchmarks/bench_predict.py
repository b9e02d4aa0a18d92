"""Cold `cnnapp predict`: the export's LiteRT model (no TensorFlow) against the SavedModel; and the
LiteRT models' accuracy and size, float and dynamic-range int8, against the SavedModel's.

Trains three small models as `make demo` does (the embedded digits with the default image CNN, the
embedded demo sentences with Kim's CNN, and a generated photo folder with train/ and test/, 3 classes,
JPEG and PNG of 20-60 px resized to 32x32, flip TTA), exports each with its float LiteRT model and once
more with `--litert int8`, then:

1. on their test parts: accuracy of the SavedModel, LiteRT float and LiteRT int8; top-1 agreement and
   the largest probability difference with the SavedModel; model.tflite sizes;
2. `cnnapp predict` in a fresh process, RUNS times each, on one image (digits) and one sentence (demo):
   wall time and peak RSS (os.wait4's ru_maxrss), `--runtime litert` against `--runtime savedmodel`,
   alternated so that the machine's load hits both alike. Target: litert <= 1.5 s.

    .venv/bin/python benchmarks/bench_predict.py [--runs 5] [--report docs/bench/litert.md]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def write_photo_folder(root: Path, *, per_class=(60, 30), classes=("red", "green", "blue")) -> Path:
    from PIL import Image
    rng = np.random.default_rng(7)
    for part, count in zip(("train", "test"), per_class):
        for label, name in enumerate(classes):
            (root / part / name).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
                img = rng.integers(0, 90, (h, w, 3)).astype(np.uint8)
                img[:, :, label] += 40
                y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
                img[y: y + h // 2, x: x + w // 2, label] = rng.integers(180, 256)
                fmt = ("JPEG", "PNG")[i % 2]
                Image.fromarray(img).save(root / part / name / f"{name}{i}.{fmt.lower()}", fmt, quality=90)
    return root


def train_models(base: Path) -> dict:
    """{name: (float export, int8 export, test inputs, test labels)}."""
    from cnnapp.config import ModelChoice, TrainConfig
    from cnnapp.data.image import ImageRequest
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask
    from cnnapp.tasks.sentences import SentenceTask
    from cnnapp.training.run import run
    import tensorflow as tf

    def png_bytes(pixels):
        return tf.io.encode_png(np.asarray(pixels, dtype=np.uint8)).numpy()

    photos = write_photo_folder(base / "photos")
    jobs = {
        "digits": (ImageTask(ImageRequest(dataset="digits")), ModelChoice(), 8),
        "demo-sentences": (SentenceTask(TextRequest()), ModelChoice(), 4),
        "photo-folder": (ImageTask(ImageRequest(data=str(photos), image_size=(32, 32))),
                         ModelChoice(name="image_cnn", options={"filters": (16, 32), "dense_units": (32,)}), 10),
    }
    out = {}
    for name, (task, model, epochs) in jobs.items():
        t0 = time.perf_counter()
        outcome = run(task, train=TrainConfig(name=name, epochs=epochs, run_dir=str(base / "runs"),
                                              export_base=str(base / "saved_models"), verbose=0), model=model)
        data = task.load()[0]
        int8 = export_model(task, outcome.result.model, outcome.prepared, class_names=data.class_names,
                            export_base=base / "saved_models", name=name, tta=task.tta(data, None), litert="int8")
        if name == "photo-folder":
            files = sorted((photos / "test").rglob("*.*"))
            values = [f.read_bytes() for f in files]
            labels = np.array([data.class_names.index(f.parent.name) for f in files])
        else:
            splits = data.to_splits(seed=1337)
            values = [png_bytes(x) for x in splits.x_test] if task.kind == "image" else [str(s) for s in splits.x_test]
            labels = splits.y_test
        out[name] = (outcome.export_dir, int8, values, labels, data.class_names)
        print(f"trained and exported {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return out


def compare(models: dict) -> list[dict]:
    from cnnapp.inference.litert import LiteRTPredictor
    from cnnapp.inference.predictor import Predictor
    rows = []
    for name, (float_dir, int8_dir, values, labels, class_names) in models.items():
        def scores(predictor):
            predictions = predictor.predict(values)
            assert [p.classes for p in predictions][0] == list(class_names)
            return np.array([p.scores for p in predictions])
        saved, lite, lite8 = scores(Predictor(float_dir)), scores(LiteRTPredictor(float_dir)), \
            scores(LiteRTPredictor(int8_dir))
        size = lambda d: (d / "assets.extra" / "litert" / "model.tflite").stat().st_size  # noqa: E731
        row = {"model": name, "test examples": len(values),
               "accuracy savedmodel": float((saved.argmax(1) == labels).mean())}
        for label, s, d in (("float", lite, float_dir), ("int8", lite8, int8_dir)):
            row[f"accuracy litert {label}"] = float((s.argmax(1) == labels).mean())
            row[f"agreement {label}"] = float((s.argmax(1) == saved.argmax(1)).mean())
            row[f"max |dp| {label}"] = float(np.abs(s - saved).max())
            row[f"size {label} (bytes)"] = size(d)
        row["savedmodel (bytes)"] = sum(f.stat().st_size for f in float_dir.rglob("*") if f.is_file()
                                        and "litert" not in f.parts)
        rows.append(row)
    return rows


# One cold predict inside a wrapper process whose only child it is: RUSAGE_CHILDREN is then that run's peak RSS.
WRAPPER = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
done = subprocess.run(sys.argv[1:], capture_output=True)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "rss_kb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "code": done.returncode, "stdout": done.stdout.decode(), "stderr": done.stderr.decode()[-2000:]}))
"""


def cold_predict(args: list[str]) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MB, stdout) of one `cnnapp predict` in a fresh process."""
    done = subprocess.run([sys.executable, "-c", WRAPPER, sys.executable, "-m", "cnnapp", "predict", *args],
                          capture_output=True, text=True, cwd=ROOT, check=True)
    result = json.loads(done.stdout)
    if result["code"] != 0:
        raise RuntimeError(f"predict failed: {result['stderr']}")
    return result["wall"], result["rss_kb"] / 1024, result["stdout"]


def time_predicts(models: dict, runs: int, tmp: Path) -> list[dict]:
    png = tmp / "digit.png"
    png.write_bytes(models["digits"][2][0])
    cases = {"one image (digits)": [str(models["digits"][0]), str(png)],
             "one sentence (demo)": [str(models["demo-sentences"][0]), "a moving and beautifully acted film"]}
    results: dict = {}
    for _ in range(runs):
        for case, args in cases.items():
            for runtime in ("litert", "savedmodel"):
                wall, rss, out = cold_predict([*args, "--runtime", runtime])
                results.setdefault((case, runtime), []).append((wall, rss))
                results.setdefault(("answer", case, runtime), out.strip())
    rows = []
    for case in cases:
        for runtime in ("litert", "savedmodel"):
            walls = [w for w, _ in results[(case, runtime)]]
            rows.append({"input": case, "runtime": runtime, "median s": statistics.median(walls),
                         "min s": min(walls), "max s": max(walls),
                         "peak RSS MB": max(r for _, r in results[(case, runtime)]),
                         "answer": results[("answer", case, runtime)]})
    return rows


def report(accuracy: list[dict], timings: list[dict], *, runs: int, load: tuple, seconds: float) -> str:
    lines = ["# LiteRT beside every export: `cnnapp predict` without TensorFlow", "",
             f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `.venv/bin/python "
             f"benchmarks/bench_predict.py --runs {runs}` (`make bench-predict`) in {seconds:.0f} s, on this "
             f"project's machine (2 CPU cores, no GPU; load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             f"at the end: the cores were shared with other jobs, so times are noisy and higher than on an "
             f"idle machine). tensorflow-cpu 2.21.0, ai-edge-litert 2.3.0.", "",
             "## Cold `cnnapp predict` (a fresh process each run; runtimes alternated)", "",
             "| input | runtime | median s | min s | max s | peak RSS MB |", "|---|---|---|---|---|---|"]
    for r in timings:
        lines.append(f"| {r['input']} | {r['runtime']} | {r['median s']:.2f} | {r['min s']:.2f} | {r['max s']:.2f} "
                     f"| {r['peak RSS MB']:.0f} |")
    lines += ["", "Target: litert <= 1.5 s. The answers printed (last run):", ""]
    lines += [f"- {r['input']}, {r['runtime']}: `{r['answer']}`" for r in timings]
    lines += ["", "## Accuracy and size on the test parts (float and dynamic-range int8 LiteRT)", "",
              "| model | test examples | SavedModel acc. | LiteRT float acc. | agreement | max abs dp | "
              "LiteRT int8 acc. | agreement | max abs dp | SavedModel bytes | float .tflite bytes | int8 .tflite bytes |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in accuracy:
        lines.append(
            f"| {r['model']} | {r['test examples']} | {r['accuracy savedmodel']:.4f} | {r['accuracy litert float']:.4f} "
            f"| {r['agreement float']:.4f} | {r['max |dp| float']:.2e} | {r['accuracy litert int8']:.4f} "
            f"| {r['agreement int8']:.4f} | {r['max |dp| int8']:.2e} | {r['savedmodel (bytes)']:,} "
            f"| {r['size float (bytes)']:,} | {r['size int8 (bytes)']:,} |")
    lines += ["", "Models: digits = the default image CNN, 8 epochs on the embedded 8x8 digits (test part: the seeded "
              "20%); demo-sentences = Kim's CNN (defaults), 4 epochs on the embedded demo corpus (seeded 20%); "
              "photo-folder = image_cnn (filters 16,32) 10 epochs on generated JPEG/PNG photos of 20-60 px, "
              "resized to 32x32, averaged with their mirror image (flip TTA) inside both models. "
              "SavedModel bytes: the version folder without its LiteRT folder.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--report", default=str(ROOT / "docs" / "bench" / "litert.md"))
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        models = train_models(Path(tmp))
        accuracy = compare(models)
        timings = time_predicts(models, args.runs, Path(tmp))
    text = report(accuracy, timings, runs=args.runs, load=os.getloadavg(), seconds=time.perf_counter() - start)
    Path(args.report).write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
