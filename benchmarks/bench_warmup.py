"""First-request latency of `cnnapp serve` with and without model warm-up (--enable_model_warmup).

Exports bench_serve's models (the default image CNN on 28x28x1 and Kim's text CNN, untrained; each
export carries assets.extra/tf_serving_warmup_requests), then starts `cnnapp serve` RUNS times with
--enable_model_warmup=false and RUNS times with =true; once the REST port answers (every version is
AVAILABLE by then), times the first :predict of one example over loopback, for each model.

    .venv/bin/python benchmarks/bench_warmup.py [--runs 3]
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_serve import export, free_port, start  # noqa: E402

REQUESTS = {"image": None, "text": {"instances": ["a moving and beautifully acted film"]}}


def first_predict_ms(port: int, name: str, body: dict) -> float:
    data = json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/{name}:predict", data=data,
                                     headers={"Content-Type": "application/json"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as r:
        r.read()
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    import numpy as np
    import tensorflow as tf
    png = tf.io.encode_png(np.full((28, 28, 1), 200, np.uint8)).numpy()
    REQUESTS["image"] = {"instances": [{"b64": base64.b64encode(png).decode()}]}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "models"
        export(base)
        results = {}
        for warmup in ("false", "true"):
            for run in range(args.runs):
                port = free_port()
                cmd = [sys.executable, "-m", "cnnapp", "serve", "--model_base_path", str(base), "--port", "0",
                       "--rest_api_port", str(port), f"--enable_model_warmup={warmup}"]
                proc = start(cmd, port, Path(tmp) / "serve.log")
                try:
                    for name, body in REQUESTS.items():    # the first request each model sees
                        results.setdefault((warmup, name), []).append(first_predict_ms(port, name, body))
                finally:
                    proc.terminate()
                    proc.wait(30)
        print("| --enable_model_warmup | model | first :predict, ms (each run) | median |")
        print("|---|---|---|---|")
        for (warmup, name), ms in results.items():
            print(f"| {warmup} | {name} | {', '.join(f'{m:.1f}' for m in ms)} | {statistics.median(ms):.1f} |")


if __name__ == "__main__":
    main()
