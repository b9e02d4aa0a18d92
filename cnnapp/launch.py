"""`cnnapp launch`: run a train command as a tf.distribute multi-worker cluster.

    cnnapp launch --workers 2 -- train-image --dataset digits     # 2 local workers on loopback
    TF_CONFIG='{...}' cnnapp launch -- train-image ...           # one worker of a real cluster

With --workers N it starts N copies of itself on this machine, each with a TF_CONFIG naming N free
127.0.0.1 ports and its own index, streams their output prefixed `[worker i]`, stops them all when
one fails or on Ctrl-C, and exits non-zero when any worker failed. Without --workers it is one
worker: it makes MultiWorkerMirroredStrategy from TF_CONFIG first (TensorFlow allows that only at
program start, before any other op), then runs the command in this process. On several hosts, run
the same `cnnapp launch -- train-...` on each, with that host's TF_CONFIG.

TensorFlow is imported only inside the worker branch, never at module import.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import click


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


def _stream(index: int, proc: subprocess.Popen, lock: threading.Lock) -> None:
    for line in proc.stdout:
        with lock:
            sys.stdout.write(f"[worker {index}] {line}")
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
                click.echo(f"[launch] worker {i}: pid {proc.pid}, {addresses[i]}")
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
            click.echo(f"[launch] worker {failed} failed (exit {procs[failed].returncode}); stopped the others",
                       err=True)
            return procs[failed].returncode if procs[failed].returncode > 0 else 1  # killed: 1
        for t in threads:
            t.join()
        click.echo(f"[launch] all {workers} workers finished")
        return 0
    except KeyboardInterrupt:
        _stop(procs)
        click.echo("[launch] interrupted; stopped the workers", err=True)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_worker(command: list[str], dump_weights: str | None) -> None:
    """This process is one worker named by TF_CONFIG: strategy first, then the command."""
    from cnnapp.errors import CnnappError
    from cnnapp.training import runtime
    try:
        worker = runtime.start_multi_worker()
    except CnnappError as e:
        raise click.ClickException(str(e)) from None
    if worker.count == 1:
        raise click.ClickException("launch: give --workers N for a local cluster, or set TF_CONFIG naming a "
                                   f"cluster of several workers. Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}")
    runtime.debug_weights_dir = dump_weights
    from cnnapp.cli import cli
    cli.main(args=command, prog_name="cnnapp", standalone_mode=False)


@click.command("launch", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--workers", type=click.IntRange(min=2), default=None,
              help="Start this many local workers on free 127.0.0.1 ports. Without it: run as the one worker "
                   "that TF_CONFIG names (the multi-machine form: the same command on every host).")
@click.option("--cpu/--gpu", "cpu", default=None,
              help="Local workers on CPU only (CUDA_VISIBLE_DEVICES=-1). [default: --cpu unless nvidia-smi exists]")
@click.option("--dump-weights", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Test hook: every worker saves its final weights to DIR/worker-<i>.weights.h5.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def launch(workers, cpu, dump_weights, command):
    """Run a train command (after `--`) as a multi-worker cluster.

    Each worker keeps --batch-size per replica, so the global batch grows with the workers;
    only worker 0 (the chief) writes the run directory and the export.
    """
    command = list(command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command or command[0] not in ("train-image", "train-text"):
        raise click.BadParameter(f"expected `-- train-image ...` or `-- train-text ...`. Received: {' '.join(command)!r}",
                                 param_hint="COMMAND")
    if workers is None:
        run_worker(command, dump_weights)
        return
    if cpu is None:
        cpu = shutil.which("nvidia-smi") is None
    code = run_local_cluster(workers, command, cpu=cpu, dump_weights=dump_weights)
    if code:
        sys.exit(code)
