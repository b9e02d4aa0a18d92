"""A local multi-worker cluster: free loopback ports, one TF_CONFIG per worker, start, stream, stop.

`run_local_cluster(N, command)` starts N copies of `cnnapp launch -- <command>`, each with a
TF_CONFIG naming N free 127.0.0.1 ports and its own index, streams their output prefixed
`[worker i]`, stops them all when one fails or on Ctrl-C, and returns the first failing exit code.
`run_local_sweep(N, args)` does the same for a keras-tuner sweep: one chief oracle and N workers of
`cnnapp sweep <args>`, told their parts by KERASTUNER_TUNER_ID / _ORACLE_IP / _ORACLE_PORT.
No click here, and TensorFlow only inside the two functions a worker calls in training
(`check_workers_agree`, `average_across_workers`); `cnnapp.cli.launch` and `cnnapp.cli.sweep` are the commands.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


def free_ports(count: int) -> list[int]:
    """`count` distinct free TCP ports on 127.0.0.1 (held open together so none repeats)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def tf_config_for(addresses: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": index}})


def _stream(label, proc: subprocess.Popen, lock: threading.Lock) -> None:
    """Copy a process's output to ours, each line prefixed `[worker i] ` (an int label) or `[label] `."""
    prefix = f"[worker {label}] " if isinstance(label, int) else f"[{label}] "
    for line in proc.stdout:
        with lock:
            sys.stdout.write(prefix + line)
            sys.stdout.flush()


def _stop(procs: list[subprocess.Popen], grace_seconds: float = 10.0) -> None:
    """SIGTERM the workers still running, then SIGKILL what is left after the grace period."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace_seconds
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _say(message: str, *, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def run_local_cluster(workers: int, command: list[str], *, cpu: bool, dump_weights: str | None) -> int:
    """Start `workers` local worker processes; the first non-zero exit code, or 0."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(workers)]
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    threads = []
    extra = ["--dump-weights", dump_weights] if dump_weights else []

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for i in range(workers):
            env = {**os.environ, "TF_CONFIG": tf_config_for(addresses, i), "PYTHONUNBUFFERED": "1"}
            if cpu:
                env["CUDA_VISIBLE_DEVICES"] = "-1"
            proc = subprocess.Popen([sys.executable, "-m", "cnnapp", "launch", *extra, "--", *command],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    stdin=subprocess.DEVNULL)
            procs.append(proc)
            with lock:
                _say(f"[launch] worker {i}: pid {proc.pid}, {addresses[i]}")
            t = threading.Thread(target=_stream, args=(i, proc, lock), daemon=True)
            t.start()
            threads.append(t)
        failed = None
        while failed is None and any(p.poll() is None for p in procs):
            failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            time.sleep(0.2)  # a launcher's poll interval, not a test's wait
        failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), failed)
        if failed is not None:
            # A cluster with a dead worker blocks in its next collective: stop the rest.
            _stop(procs)
            for t in threads:
                t.join()
            _say(f"[launch] worker {failed} failed (exit {procs[failed].returncode}); stopped the others",
                       err=True)
            return procs[failed].returncode if procs[failed].returncode > 0 else 1  # killed: 1
        for t in threads:
            t.join()
        _say(f"[launch] all {workers} workers finished")
        return 0
    except KeyboardInterrupt:
        _stop(procs)
        _say("[launch] interrupted; stopped the workers", err=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_local_sweep(workers: int, args: list[str], *, chief_linger_seconds: float = 30.0) -> int:
    """Run `cnnapp sweep <args>` as one chief oracle and `workers` workers on a free 127.0.0.1 port.

    The chief only hands out trials (and sees no GPU); the workers train. When the chief is done, a
    worker has nothing left to run: it exits on its own, or is stopped after `chief_linger_seconds`.
    Returns the first failing exit code, or 0.
    """
    port = free_ports(1)[0]
    base = {**os.environ, "PYTHONUNBUFFERED": "1", "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": str(port)}
    roles = [("chief", {"KERASTUNER_TUNER_ID": "chief", "CUDA_VISIBLE_DEVICES": "-1"})] + [
        (f"worker {i}", {"KERASTUNER_TUNER_ID": f"worker{i}", "TF_FORCE_GPU_ALLOW_GROWTH": "true"})
        for i in range(workers)]
    lock = threading.Lock()
    procs: list[subprocess.Popen] = []
    threads = []

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        for label, extra in roles:
            proc = subprocess.Popen([sys.executable, "-m", "cnnapp", "sweep", *args], env={**base, **extra},
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    stdin=subprocess.DEVNULL)
            procs.append(proc)
            with lock:
                _say(f"[sweep] {label}: pid {proc.pid}, oracle 127.0.0.1:{port}")
            t = threading.Thread(target=_stream, args=(label, proc, lock), daemon=True)
            t.start()
            threads.append(t)
        chief, labels = procs[0], [label for label, _ in roles]
        chief_done_at = None
        while any(p.poll() is None for p in procs):
            failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            if failed is not None:
                _stop(procs)
                for t in threads:
                    t.join()
                _say(f"[sweep] {labels[failed]} failed (exit {procs[failed].returncode}); stopped the others", err=True)
                return procs[failed].returncode if procs[failed].returncode > 0 else 1
            if chief.poll() == 0:
                chief_done_at = chief_done_at or time.monotonic()
                if time.monotonic() - chief_done_at > chief_linger_seconds:
                    _stop(procs)   # the sweep is over: what is left has no trial to run
                    break
            time.sleep(0.2)  # a launcher's poll interval, not a test's wait
        for t in threads:
            t.join()
        failed = next((i for i, p in enumerate(procs) if p.returncode not in (0, None) and not
                       (chief.returncode == 0 and chief_done_at is not None and p.returncode < 0)), None)
        if failed is not None:
            _say(f"[sweep] {labels[failed]} failed (exit {procs[failed].returncode})", err=True)
            return procs[failed].returncode if procs[failed].returncode > 0 else 1
        _say(f"[sweep] the chief and {workers} worker(s) finished")
        return 0
    except KeyboardInterrupt:
        _stop(procs)
        _say("[sweep] interrupted; stopped the chief and the workers", err=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


# ---------------------------------------------------------------------------- inside a worker

def check_workers_agree(splits, preprocess, strategy) -> str:
    """Raise CnnappError unless every worker has the same data fingerprint (one all-gather).

    Each worker loads and splits the data itself with the same seed, and the text vectorizer is
    adapted on that training split, so the same command gives the same vocabulary everywhere;
    this proves it at the start of every multi-worker run instead of trusting it.
    """
    import hashlib

    import numpy as np
    import tensorflow as tf

    from cnnapp.training.resume import data_fingerprint
    fingerprint = hashlib.sha256(json.dumps({"class_names": list(splits.class_names), "counts": splits.counts(),
                                             "data": data_fingerprint(splits, preprocess)},
                                            sort_keys=True).encode()).hexdigest()
    # 16-bit chunks are exact in float32, the dtype every collective implementation carries.
    chunks = np.array([[int(fingerprint[i:i + 4], 16) for i in range(0, 32, 4)]], dtype=np.float32)
    local = strategy.experimental_distribute_values_from_function(lambda ctx: tf.constant(chunks))
    gathered = strategy.gather(local, axis=0).numpy()
    if not (gathered == gathered[0]).all():
        raise CnnappError("multi-worker: the workers loaded different data (class names, splits or "
                          "vocabulary); give every worker the same command and data. Received: "
                          f"{len(gathered)} fingerprints, {len({tuple(r) for r in gathered})} distinct")
    log.info("all %d workers agree on class names, splits and vocabulary (fingerprint %s)",
             len(gathered), fingerprint[:16])
    return fingerprint


def average_across_workers(variables, strategy) -> None:
    """Give every worker the mean of its float non-trainable variables (BatchNorm moving statistics).

    Gradients are all-reduced, so trainable weights agree on all workers; BatchNorm's moving mean and
    variance are updated from each worker's own shard and drift apart. Their mean is the moving
    mean of the global batch (the moving variance leaves out the spread between shard means: a
    small difference), and it makes the workers, and the chief's export, identical.
    """
    import tensorflow as tf
    for v in variables:
        if not v.dtype.startswith("float"):
            continue  # seed generator states: the same on every worker already
        local = strategy.experimental_distribute_values_from_function(lambda ctx, v=v: tf.identity(v.value))
        v.assign(strategy.reduce("MEAN", local, axis=None))
