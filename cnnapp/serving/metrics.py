"""Prometheus text-format metrics, named as TF Serving names them at /monitoring/prometheus/metrics.

Counters and histograms guarded by one lock: a handful of updates per request, no dependency.
Label values are bounded: callers pass a served model's name or `UNKNOWN_MODEL` (a request naming
a made-up model must not add series), an API from a fixed set and a status code.
"""

from __future__ import annotations

import bisect
import threading

# TF Serving's request latency is in microseconds; the buckets cover 100 us .. 10 s.
LATENCY_BUCKETS_US = (100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000,
                      1000000, 2500000, 10000000)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
UNKNOWN_MODEL = "(unknown)"     # one label value for every name that is not a served model


def _labels(labels: tuple) -> str:
    def esc(v):
        return str(v).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels) + "}" if labels else ""


class Metrics:
    def __init__(self):
        self._lock = threading.Lock()
        self._counters: dict[tuple, float] = {}
        self._histograms: dict[tuple, list] = {}        # (name, labels) -> [bucket counts..., sum, count]
        self._help: dict[str, tuple[str, str]] = {}

    def inc(self, name: str, help_text: str, value: float = 1, **labels) -> None:
        self._inc(name, help_text, tuple(sorted(labels.items())), value)

    def observe(self, name: str, help_text: str, value: float, buckets: tuple, **labels) -> None:
        self._observe(name, help_text, tuple(sorted(labels.items())), value, buckets)

    def _inc(self, name: str, help_text: str, labels: tuple, value: float = 1) -> None:
        key = (name, labels)
        with self._lock:
            self._help.setdefault(name, ("counter", help_text))
            self._counters[key] = self._counters.get(key, 0) + value

    def _observe(self, name: str, help_text: str, labels: tuple, value: float, buckets: tuple) -> None:
        key = (name, labels, buckets)
        with self._lock:
            self._help.setdefault(name, ("histogram", help_text))
            h = self._histograms.setdefault(key, [0] * (len(buckets) + 2))
            i = bisect.bisect_left(buckets, value)
            if i < len(buckets):
                h[i] += 1
            h[-2] += value
            h[-1] += 1

    def request(self, model: str, api: str, status, latency_us: float, entrypoint: str = "REST") -> None:
        """`status`: an HTTP code (REST) or a gRPC status name; `model` a served name or UNKNOWN_MODEL."""
        labels = (("API", api), ("entrypoint", entrypoint), ("model_name", model))     # sorted by name
        with_status = (*labels, ("status", str(status)))
        self._inc(":tensorflow:serving:request_count", "The total number of requests.", with_status)
        self._observe(":tensorflow:serving:request_latency", "Distribution of wall time (in microseconds) "
                      "for Tensorflow Serving request.", labels, latency_us, LATENCY_BUCKETS_US)
        if status not in (200, "OK"):
            self._inc(":tensorflow:serving:request_error_count", "The total number of failed requests.",
                      with_status)

    def batch(self, model: str, size: int) -> None:
        self.observe(":tensorflow:serving:batching_session:processed_batch_size",
                     "Tracks the batch size distribution on processing.", size, BATCH_SIZE_BUCKETS,
                     model_name=model)

    def render(self) -> str:
        with self._lock:
            counters = dict(self._counters)
            histograms = {k: list(v) for k, v in self._histograms.items()}
            helps = dict(self._help)
        lines = []
        for name in sorted(helps):
            kind, text = helps[name]
            lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
            if kind == "counter":
                for (n, labels), v in sorted(counters.items()):
                    if n == name:
                        lines.append(f"{name}{_labels(labels)} {v:g}")
                continue
            for (n, labels, buckets), h in sorted(histograms.items()):
                if n != name:
                    continue
                running = 0
                for bound, count in zip(buckets, h):
                    running += count
                    lines.append(f"{name}_bucket{_labels(labels + (('le', f'{bound:g}'),))} {running}")
                lines.append(f"{name}_bucket{_labels(labels + (('le', '+Inf'),))} {h[-1]}")
                lines.append(f"{name}_sum{_labels(labels)} {h[-2]:g}")
                lines.append(f"{name}_count{_labels(labels)} {h[-1]}")
        return "\n".join(lines) + "\n"
