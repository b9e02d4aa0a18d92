"""Latency of `:explain` through a real `cnnapp serve` over loopback: one 28x28 image per request.

The model is the default image CNN on 28x28x1 (32, 64, 128 filters; the keras-io MNIST size),
untrained: speed does not depend on the weights. One keep-alive client sends requests one after
another (the page's pattern: one person, one image), so the numbers are per-request latency,
not throughput. `:predict` on the same image is measured beside it for scale. The target is
p50 <= 100 ms on the project's 2 shared CPU cores.

    .venv/bin/python benchmarks/bench_explain.py [--requests 200] [--images png|array]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def export(base: Path) -> None:
    import keras
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    keras.utils.set_random_seed(0)
    model = build_image_cnn(input_shape=(28, 28, 1), num_classes=10)
    prepared = image_prepared(ImageDecoder(height=28, width=28, channels=1, name="image_decoder"), num_classes=10)
    export_model(ImageTask(), model, prepared, class_names=[str(i) for i in range(10)], export_base=base,
                 name="mnist", version=1)


def digit_png() -> str:
    import numpy as np
    import tensorflow as tf
    pixels = np.zeros((28, 28, 1), np.uint8)
    pixels[4:24, 12:16] = 255                                 # a "1"
    return base64.b64encode(tf.io.encode_png(pixels).numpy()).decode()


def start_server(base: Path) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cnnapp", "serve", "--model-base-path", str(base),
                             "--port", "0", "--rest_api_port", str(port), "--file-system-poll-wait-seconds", "0"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:                                  # listening once the models are loaded
        if "Uvicorn running on" in line:
            return proc, port
    raise SystemExit(f"the server died: exit {proc.wait()}")


def measure(port: int, path: str, body: bytes, n: int) -> list[float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise SystemExit(f"{path}: {response.status} {data[:300]!r}")
        if i >= 5:                                            # the first calls warm the connection and caches
            times.append((time.perf_counter() - t0) * 1000)
    conn.close()
    return times


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--images", choices=["png", "array"], default="png")
    parser.add_argument("--max-maps", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        export(base)
        png = digit_png()
        proc, port = start_server(base)
        try:
            load_before = os.getloadavg()
            explain = json.dumps({"instances": [{"b64": png}], "images": args.images,
                                  "max_maps": args.max_maps}).encode()
            predict = json.dumps({"instances": [{"b64": png}]}).encode()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("POST", "/v1/models/mnist:explain", body=explain, headers={"Content-Type": "application/json"})
            size = len(conn.getresponse().read())
            conn.close()
            results = {"explain": measure(port, "/v1/models/mnist:explain", explain, args.requests),
                       "predict": measure(port, "/v1/models/mnist:predict", predict, args.requests)}
            load_after = os.getloadavg()
        finally:
            proc.terminate()
            proc.communicate(timeout=30)
    print(f"cnnapp serve, image_cnn 28x28x1 (3 conv blocks, untrained), one image per request, "
          f"{args.requests} sequential requests, images={args.images}, max_maps={args.max_maps}")
    print(f"{os.cpu_count()} CPUs; load average before {load_before[0]:.2f}, after {load_after[0]:.2f} (1 min)")
    for name, times in results.items():
        print(f"  :{name:8s} p50 {pct(times, 50):6.1f} ms   p90 {pct(times, 90):6.1f} ms   "
              f"p99 {pct(times, 99):6.1f} ms" + (f"   answer {size / 1024:.0f} KiB" if name == "explain" else ""))


if __name__ == "__main__":
    main()
