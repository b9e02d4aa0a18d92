"""`cnnapp launch`: run a train command as a tf.distribute multi-worker cluster.

    cnnapp launch --workers 2 -- train-image --dataset digits     # 2 local workers on loopback
    TF_CONFIG='{...}' cnnapp launch -- train-image ...           # one worker of a real cluster

With --workers N it starts N local workers (`cnnapp.training.cluster`). Without it, this process is
the one worker TF_CONFIG names: it makes MultiWorkerMirroredStrategy first (TensorFlow allows that
only at program start, before any other op), then runs the train command here with that strategy.
On several hosts, run the same `cnnapp launch -- train-...` on each, with that host's TF_CONFIG.
"""

from __future__ import annotations

import os
import shutil
import sys

import click

from cnnapp.cli.errors import library_errors


@click.command("launch", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--workers", type=click.IntRange(min=2), default=None,
              help="Start this many local workers on free 127.0.0.1 ports. Without it: run as the one worker "
                   "that TF_CONFIG names (the multi-machine form: the same command on every host).")
@click.option("--cpu/--gpu", "cpu", default=None,
              help="Local workers on CPU only (CUDA_VISIBLE_DEVICES=-1). [default: --cpu unless nvidia-smi exists]")
@click.option("--dump-weights", type=click.Path(file_okay=False), default=None, hidden=True,
              help="Test hook: every worker saves its final weights to DIR/worker-<i>.weights.h5.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@library_errors
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
    from cnnapp.training.cluster import run_local_cluster
    code = run_local_cluster(workers, command, cpu=shutil.which("nvidia-smi") is None if cpu is None else cpu,
                             dump_weights=dump_weights)
    if code:
        sys.exit(code)


def run_worker(command: list[str], dump_weights: str | None) -> None:
    """This process is the worker TF_CONFIG names: the strategy first, then the command."""
    from cnnapp.training.runtime import make_strategy, read_tf_config
    cluster = read_tf_config(os.environ)
    if cluster is None:
        raise click.ClickException("launch: give --workers N for a local cluster, or set TF_CONFIG naming a "
                                   f"cluster of several workers. Received: TF_CONFIG={os.environ.get('TF_CONFIG')!r}")
    strategy = make_strategy("multi-worker", cluster)
    group = click.get_current_context().find_root().command
    group.main(args=command, prog_name="cnnapp", standalone_mode=False,
               obj={"strategy": strategy, "cluster": cluster, "dump_weights_dir": dump_weights})
