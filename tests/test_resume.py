"""A training run killed part-way resumes from its BackupAndRestore backup when run again."""

from __future__ import annotations

import pytest

import csv
import os
import re
import signal
import subprocess
import sys


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_killed_run_resumes_instead_of_restarting(tmp_path):
    args = [sys.executable, "-m", "cnnapp", "train-image", "--dataset", "digits", "--name", "r",
            "--epochs", "40", "--patience", "40", "--batch-size", "16", "--filters", "8,16", "--dense-units", "16",
            "--run-dir", str(tmp_path / "runs"), "--export-base", str(tmp_path / "models")]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    seen = []
    try:
        for line in proc.stdout:  # blocks until the run prints; no sleeping
            seen.append(line)
            m = re.match(r"Epoch (\d+)/40", line)
            if m and int(m.group(1)) >= 4:  # epochs 1-3 finished, so their backup is on disk
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    killed_at = int(re.match(r"Epoch (\d+)/40", seen[-1]).group(1))
    assert (tmp_path / "runs" / "r" / "backup").is_dir()
    assert not (tmp_path / "models").exists()  # nothing exported by the killed run

    rerun = subprocess.run(args[:args.index("--epochs") + 1] + ["6"] + args[args.index("--epochs") + 2:],
                           capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    out = rerun.stdout + rerun.stderr
    assert "resuming the interrupted run" in out
    first_epoch = int(re.search(r"Epoch (\d+)/6", out).group(1))
    assert first_epoch >= killed_at - 1 >= 3, out[-2000:]  # it did not start again at epoch 1
    with open(tmp_path / "runs" / "r" / "history.csv") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f)]
    assert epochs == list(range(len(epochs))) and len(epochs) == 6  # appended, continuous, 0..5
    assert (tmp_path / "models" / "r" / "1" / "saved_model.pb").is_file()
