"""`cnnapp serve` as a real process over loopback: huge requests get a 400 or a bounded answer with
bounded memory (read from /proc/PID/status), while status GETs sent meanwhile are still answered.

`LiveServer` is shared with the gRPC tests: it starts `python -m cnnapp serve ...`, keeps reading its
log (so the pipe never fills) and waits on log lines, never on sleeps.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """`cnnapp serve` in a subprocess; `.rest` / `.grpc` are its addresses (None when off)."""

    def __init__(self, *args, rest: bool = True, grpc: bool = False, ready_timeout: float = 180):
        self.rest_port = free_port() if rest else 0
        self.grpc_port = free_port() if grpc else 0
        cmd = [sys.executable, "-m", "cnnapp", "serve", "--port", str(self.grpc_port),
               "--rest_api_port", str(self.rest_port), *map(str, args)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        ready = "Uvicorn running on" if rest else "serving gRPC only"
        if not self.wait_log(ready, ready_timeout):
            self.stop()
            raise AssertionError(f"server did not start: {cmd}\n{self.log[-3000:]}")
        self.rest = f"http://127.0.0.1:{self.rest_port}" if rest else None
        self.grpc = f"127.0.0.1:{self.grpc_port}" if grpc else None

    def _read(self):
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def log(self) -> str:
        with self._cond:
            return "".join(self.lines)

    def wait_log(self, fragment: str, timeout: float, start: int = 0) -> bool:
        """Wait (bounded) until a log line from index `start` on contains `fragment`; False if it
        never comes or the server exits."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if any(fragment in line for line in self.lines[start:]):
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return False
                self._cond.wait(min(left, 1.0))

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.log


_WATCHER = r"""
import json, sys, threading, time
import httpx
url, path, pid = sys.argv[1], sys.argv[2], sys.argv[3]
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
peak, latencies, failures = 0, [], []

def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

def sample():
    global peak
    while not stop.wait(0.01):
        peak = max(peak, rss())

threading.Thread(target=sample, daemon=True).start()
with httpx.Client(base_url=url, timeout=60) as http:
    print("ready", flush=True)
    while not stop.is_set():
        t0 = time.perf_counter()
        r = http.get(path)
        latencies.append(time.perf_counter() - t0)
        if r.status_code != 200:
            failures.append(r.text[:200])
        stop.wait(0.02)
print(json.dumps({"peak_mb": max(peak, rss()), "latencies": latencies, "failures": failures}), flush=True)
"""


class Watch:
    """While open, another process (so this one's GIL cannot delay it) samples the server's RSS
    and sends status GETs, recording their latencies."""

    def __init__(self, server: LiveServer, status_path: str):
        self.server, self.path = server, status_path
        self.peak_mb, self.latencies, self.failures = 0.0, [], []

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", _WATCHER, self.server.rest, self.path,
                                      str(self.server.proc.pid)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout.readline().strip() == "ready"
        return self

    def __exit__(self, *exc):
        out, _ = self.proc.communicate("", timeout=120)
        result = json.loads(out.strip().splitlines()[-1])
        self.peak_mb, self.latencies, self.failures = result["peak_mb"], result["latencies"], result["failures"]


def _strings_body(n: int) -> bytes:
    return b'{"instances":[' + b'"",' * (n - 1) + b'""]}'


@pytest.fixture(scope="module")
def live(model_base):
    server = LiveServer("--model_base_path", model_base, "--file_system_poll_wait_seconds", 0)
    yield server
    server.stop()


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_huge_requests_are_refused_or_bounded_and_status_stays_live(live):
    with httpx.Client(base_url=live.rest, timeout=120) as http:
        assert http.post("/v1/models/tiny_text:predict", json={"instances": ["warm up"] * 300}).status_code == 200
        pixels = json.dumps({"signature_name": "serving_pixels",
                             "instances": np.zeros((1, 1500, 1500, 1)).tolist()}).encode()
        baseline = live.rss_mb()
        with Watch(live, "/v1/models/tiny_text") as watch:
            # The requests: 1,000,000 and 200,000 empty sentences (4 MB and 0.8 MB bodies).
            for n in (1_000_000, 200_000):
                r = http.post("/v1/models/tiny_text:predict", content=_strings_body(n))
                assert r.status_code == 400, r.text[:300]
                assert list(r.json()) == ["error"] and "over the limit of 10000" in r.json()["error"]
            # At the cap: answered in full, through the model 256 examples at a time.
            r = http.post("/v1/models/tiny_text:predict", content=_strings_body(10_000))
            assert r.status_code == 200, r.text[:300]
            predictions = r.json()["predictions"]
            assert len(predictions) == 10_000 and predictions[0] == predictions[-1]
            # One 1x1500x1500 pixel image (11 MB of JSON): decoded off the event loop.
            t0 = time.perf_counter()
            r = http.post("/v1/models/tiny_image:predict", content=pixels)
            pixel_seconds = time.perf_counter() - t0
            assert r.status_code == 200, r.text[:300]
            assert len(r.json()["predictions"]) == 1
        growth = watch.peak_mb - baseline
        assert growth < 1024, f"RSS grew {growth:.0f} MB (from {baseline:.0f} MB)"
        assert not watch.failures, watch.failures[:3]
        assert len(watch.latencies) >= 10, "too few status GETs to tell"
        # The liveness bound: a status GET waited 10.1 s behind such a request before, i.e.
        # the whole request. On a quiet machine the slowest GET must take under 1 s; on a loaded
        # shared one (where the pixel request itself takes 3-4x longer) under a fifth of the
        # request's own time, which still tells "answered meanwhile" from "queued behind it".
        bound = max(1.0, pixel_seconds / 5)
        assert max(watch.latencies) < bound, (sorted(watch.latencies)[-5:], f"pixel request took {pixel_seconds:.1f} s")
        print(f"RSS growth {growth:.0f} MB; {len(watch.latencies)} status GETs, slowest {max(watch.latencies):.3f} s; "
              f"pixel request {pixel_seconds:.1f} s")
    assert live.proc.poll() is None, live.log[-2000:]
    assert "Traceback" not in live.log, live.log[-3000:]


def test_client_disconnecting_mid_upload_is_not_an_internal_error(live):
    mark = len(live.lines)
    with socket.create_connection(("127.0.0.1", live.rest_port), timeout=30) as s:
        s.sendall(b"POST /v1/models/tiny_text:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000000\r\n\r\n" + b'{"instances": [' + b'"a",' * 1000)
    assert live.wait_log("client disconnected during POST /v1/models/tiny_text:predict", 60, start=mark), \
        live.log[-3000:]
    assert httpx.get(f"{live.rest}/v1/models/tiny_text", timeout=30).status_code == 200
    assert "Traceback" not in live.log and "internal error" not in live.log, live.log[-3000:]


def test_request_timeout_answers_504_as_tf_serving(model_base):
    """TF Serving answers DEADLINE_EXCEEDED with 504 on REST (http_server.cc: GATEWAY_TO)."""
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(model_base, "tiny_text"), request_timeout_ms=1))
    client = TestClient(serving.app, base_url="http://localhost")
    r = client.post("/v1/models/tiny_text:predict", content=_strings_body(10_000))
    assert r.status_code == 504 and list(r.json()) == ["error"] and "rest_api_timeout_in_ms" in r.json()["error"]
    assert client.get("/v1/models/tiny_text").status_code == 200
    serving.close()
