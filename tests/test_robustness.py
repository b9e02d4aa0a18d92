"""Work is never lost and never mixed up: a rerun resumes only its own backup, output folders are
checked before training, a full disk after training says what was kept, half-written exports are
cleaned up. Real processes (SIGKILL, RLIMIT_FSIZE) and real TensorFlow; tiny models."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# This checkout's cnnapp, also for runs in another working directory.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
       "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
TINY = ["--dataset", "digits", "--batch-size", "64", "--dense-units", "8"]


def cnnapp(*args) -> list[str]:
    return [sys.executable, "-m", "cnnapp", *map(str, args)]


def kill_after_first_epoch(args: list[str], while_running=None) -> list[str]:
    """Run `args`, SIGKILL it once epoch 2 starts (epoch 1's backup is on disk); the lines it printed.
    `while_running(proc)` is called just before the kill."""
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    seen = []
    try:
        for line in proc.stdout:   # blocks until the run prints: no sleeping
            seen.append(line)
            if re.match(r"Epoch 2/", line):
                if while_running is not None:
                    while_running(proc)
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "".join(seen[-20:])
    return seen


def one_error_line(out: str) -> str:
    """The output's one `Error:` line (and no traceback)."""
    assert "Traceback" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, out[-3000:]
    return errors[0]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_rerun_with_other_options_is_refused_and_fresh_starts_over(tmp_path):
    base = cnnapp("train-image", *TINY, "--name", "kc", "--epochs", "40", "--patience", "40",
                  "--run-dir", tmp_path / "runs", "--export-base", tmp_path / "models")
    first = base + ["--filters", "4,8"]
    seen = kill_after_first_epoch(first, while_running=lambda proc: assert_locked_by(
        tmp_path / "runs" / "kc", proc.pid, "cnnapp train-image --dataset digits"))
    assert not any("resuming" in line for line in seen)
    from cnnapp.run_lock import run_folder_lock
    with run_folder_lock(tmp_path / "runs" / "kc", name="kc"):   # SIGKILL released it: no stale lock
        pass
    backup = tmp_path / "runs" / "kc" / "backup"
    assert (backup / "fingerprint.json").is_file() and (backup / "latest.weights.h5").is_file()

    # Other filters: one line naming what differs and the ways out; the backup is kept.
    other = base + ["--filters", "8,16"]
    refused = subprocess.run(other, capture_output=True, text=True, env=ENV, timeout=600)
    assert refused.returncode == 1
    line = one_error_line(refused.stdout + refused.stderr)
    assert "filters: [4, 8] -> [8, 16]" in line and "--fresh" in line and "another --name" in line, line
    assert (backup / "latest.weights.h5").is_file()

    # --fresh discards it and starts at epoch 1 with the new options; killed again after epoch 1 ...
    seen = kill_after_first_epoch(other + ["--fresh"])
    assert not any("resuming" in line for line in seen) and any(line.startswith("Epoch 1/40") for line in seen)

    # ... the same options resume (the history continues), and the backup is gone after the run.
    resumed = subprocess.run(base[:base.index("--epochs") + 1] + ["2"] + base[base.index("--epochs") + 2:]
                             + ["--filters", "8,16"], capture_output=True, text=True, env=ENV, timeout=600)
    out = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, out[-3000:]
    assert "resuming the interrupted run" in out and "Epoch 1/2" not in out and "Epoch 2/2" in out, out[-3000:]
    with open(tmp_path / "runs" / "kc" / "history.csv") as f:
        assert [row.split(",")[0] for row in f.read().split()[1:]] == ["0", "1"]
    assert not backup.exists()
    assert (tmp_path / "models" / "kc" / "1" / "saved_model.pb").is_file()


def test_fingerprint_names_changed_data_and_options():
    from cnnapp.training.resume import fingerprint_differences
    before = {"data": "aa", "model": {"name": "text_cnn", "resolved_options": {"feature_maps": 100}},
              "training": {"seed": 1337}}
    now = {"data": "bb", "model": {"name": "text_cnn", "resolved_options": {"feature_maps": 8}},
           "training": {"seed": 1337}}
    assert fingerprint_differences(before, now) == [
        "data: other examples, labels or vocabulary", "model.resolved_options.feature_maps: 100 -> 8"]
    assert fingerprint_differences(before, before) == []


def limited_run(args, file_size_limit: int, cwd: Path) -> subprocess.CompletedProcess:
    """Run with RLIMIT_FSIZE: writing past `file_size_limit` bytes fails with EFBIG, as on a full disk."""
    import resource

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))
    return subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600, cwd=cwd, preexec_fn=limit)


@pytest.mark.parametrize("limit, folder, kept", [
    (20_000, "--run-dir", "nothing was kept"),           # the first backup (latest.weights.h5) does not fit
    (60_000, "--run-dir", "kept the backup of epoch 1"),   # the backup fits, best.keras (~70 kB) does not
    (100_000, "--export-base", "the training finished and is kept"),   # training fits, the SavedModel does not
])
@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_full_disk_is_one_line_naming_the_full_folder_and_what_was_kept(tmp_path, limit, folder, kept):
    args = cnnapp("train-image", *TINY, "--filters", "4,8", "--epochs", "1", "--name", "df")
    done = limited_run(args, limit, tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out[-3000:]
    line = one_error_line(out)
    assert line.startswith(f"Error: {folder}: File too large") and kept in line, line
    assert not list((tmp_path / "saved_models").glob("df/*"))    # no version, and no half-written .tmp-*
    assert_whole(tmp_path / "runs" / "df")
    if folder == "--export-base":   # the same command only exports: no epoch is trained again
        rerun = subprocess.run(args, capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path)
        out = rerun.stdout + rerun.stderr
        assert rerun.returncode == 0, out[-3000:]
        assert "without training again" in out and "Epoch 1/" not in out, out[-3000:]
        assert (tmp_path / "saved_models" / "df" / "1" / "saved_model.pb").is_file()
        assert not (tmp_path / "runs" / "df" / "backup").exists()   # removed once the export is written
        with open(tmp_path / "runs" / "df" / "history.csv") as f:
            assert len(f.read().split()) == 2   # header and epoch 1, once
    elif "backup" in kept:   # and the same command without the limit resumes from it
        rerun = subprocess.run(args + ["--epochs", "2"], capture_output=True, text=True, env=ENV, timeout=600,
                               cwd=tmp_path)
        assert rerun.returncode == 0 and "resuming the interrupted run" in rerun.stdout + rerun.stderr
        assert "Epoch 1/2" not in rerun.stdout


def assert_whole(run_dir: Path) -> None:
    """Every file a failed run left is whole: no temporary files, the checkpoints open as zip files, the JSON
    parses, history.csv has its header (never 0 bytes)."""
    import zipfile
    files = [p for p in run_dir.rglob("*") if p.is_file() and "tensorboard" not in p.parts]
    assert not [p for p in files if ".tmp-" in p.name], files
    for p in files:
        if p.suffix == ".keras":
            with zipfile.ZipFile(p) as z:
                assert z.testzip() is None, p
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.name == "history.csv":
            assert p.read_text().startswith("epoch,"), p


def test_a_file_is_replaced_whole_or_not_at_all(tmp_path):
    """A write that fails part-way (EFBIG past RLIMIT_FSIZE, in a child process) leaves the old file as it
    was, no temporary file, and an OSError naming the file."""
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    code = ("import resource, sys; from cnnapp.atomic import write_atomically\n"
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))\n"
            "try:\n    write_atomically(sys.argv[1], b'x' * 5000)\n"
            "except OSError as e:\n    print(e.errno, e.filename)\n")
    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=ENV,
                          timeout=60)
    import errno
    assert done.stdout.split() == [str(errno.EFBIG), str(target)], done.stdout + done.stderr
    assert target.read_text() == '{"old": true}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


HOLD = ("import sys; from cnnapp.run_lock import run_folder_lock\n"
        "with run_folder_lock(sys.argv[1], name='x', command='cnnapp train-image --name x'):\n"
        "    print('locked', flush=True); sys.stdin.read()\n")


def hold_lock(folder: Path) -> subprocess.Popen:
    """A process that holds `folder`'s run lock (as cnnapp takes it) until its stdin is closed."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline() == "locked\n"   # blocks until it holds the lock: no sleeping
    return holder


def assert_locked_by(folder: Path, pid: int, command: str) -> None:
    from cnnapp.errors import CnnappError
    from cnnapp.run_lock import run_folder_lock
    with pytest.raises(CnnappError) as e:
        with run_folder_lock(folder, name=folder.name):
            pass
    message = str(e.value)
    assert f"is in use by another run (pid {pid}: {command}" in message and "\n" not in message, message


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_second_run_with_the_same_name_is_one_line_naming_the_first(tmp_path):
    runs = tmp_path / "runs"
    holder = hold_lock(runs / "x")
    try:
        second = subprocess.run(cnnapp("train-image", *TINY, "--filters", "4,8", "--epochs", "1", "--name", "x",
                                       "--run-dir", runs, "--export-base", tmp_path / "models"),
                                capture_output=True, text=True, env=ENV, timeout=600)
        line = one_error_line(second.stdout + second.stderr)
        assert second.returncode == 1
        assert line == (f"Error: --name: {runs / 'x'} is in use by another run (pid {holder.pid}: cnnapp "
                        f"train-image --name x); wait for it or choose another --name. Received: name=x"), line
        assert sorted(p.name for p in (runs / "x").iterdir()) == [".lock"]   # the refused run wrote nothing
        assert not (tmp_path / "models").exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0 and not runs.exists()   # the lock file and the folders it made are gone


def test_a_killed_holder_leaves_no_stale_lock_and_workers_lock_their_own_file(tmp_path):
    from cnnapp.run_lock import run_folder_lock
    holder = hold_lock(tmp_path / "x")
    with run_folder_lock(tmp_path / "x", name="x", worker_index=1) as worker_lock:   # another worker of the job
        assert worker_lock.name == ".lock-worker-1"
        assert_locked_by(tmp_path / "x", holder.pid, "cnnapp train-image --name x")
    holder.kill()
    holder.wait(timeout=60)
    assert (tmp_path / "x" / ".lock").exists()   # left by the killed process, but no longer locked
    with run_folder_lock(tmp_path / "x", name="x") as lock:
        assert lock.read_text().split("\n")[0] == str(os.getpid())
    assert not (tmp_path / "x" / ".lock").exists()


DIGIT_NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_class_names_reach_metrics_plots_the_export_and_predict(tmp_path):
    from conftest import png_bytes, run_cli
    from sklearn.datasets import load_digits
    names_file = tmp_path / "names.txt"
    names_file.write_text("\n".join(DIGIT_NAMES) + "\n")
    result = run_cli(["train-image", *TINY, "--filters", "4,8", "--epochs", "1", "--name", "named",
                      "--class-names", f"@{names_file}", "--run-dir", tmp_path / "runs",
                      "--export-base", tmp_path / "models"])
    # One result block naming the run directory, the plots and the export (not its temporary folder).
    out = result.output
    assert out.count("run directory: ") == 1 and ".tmp-" not in out, out
    assert f"plots: {tmp_path / 'runs' / 'named' / 'learning_curves.png'}" in out
    assert f"exported: {tmp_path / 'models' / 'named' / '1'}" in out
    metrics = json.loads((tmp_path / "runs" / "named" / "metrics.json").read_text())
    assert metrics["test"]["class_names"] == DIGIT_NAMES and list(metrics["test"]["per_class"]) == DIGIT_NAMES
    assert (tmp_path / "runs" / "named" / "confusion_matrix.png").is_file()
    meta = json.loads((tmp_path / "models" / "named" / "1" / "assets.extra" / "cnnapp.json").read_text())
    assert meta["class_names"] == DIGIT_NAMES

    digits = load_digits()
    image = tmp_path / "digit.png"
    image.write_bytes(png_bytes((digits.images[0] * 255 / 16).astype("uint8")[..., None]))
    answer = json.loads(run_cli(["predict", tmp_path / "models" / "named", image, "--json", "--top-k", "10"]).output)
    assert sorted(t["class"] for t in answer["predictions"][0]["top"]) == sorted(DIGIT_NAMES)


def test_parse_class_names_takes_a_comma_list_or_a_file(tmp_path):
    from cnnapp.data import parse_class_names
    (tmp_path / "trec.names").write_text("DESC\nENTY\n\nABBR\n")
    assert parse_class_names("DESC, ENTY,ABBR") == ("DESC", "ENTY", "ABBR")
    assert parse_class_names(f"@{tmp_path / 'trec.names'}") == ("DESC", "ENTY", "ABBR")
    assert parse_class_names(None) == ()


def test_a_class_file_glob_leaves_out_the_combined_all_file(tmp_path):
    from cnnapp.data.text import TextRequest, read_text_data
    pos, neg = [f"a fine film number {i}" for i in range(30)], [f"a dull film number {i}" for i in range(30)]
    (tmp_path / "rt-polarity.pos").write_text("\n".join(pos) + "\n")
    (tmp_path / "rt-polarity.neg").write_text("\n".join(neg) + "\n")
    (tmp_path / "rt-polarity.all").write_text("".join(f"1 {s}\n" for s in pos) + "".join(f"0 {s}\n" for s in neg))
    data, source = read_text_data(TextRequest(data=(str(tmp_path / "rt-polarity.*"),)))
    assert source == "class-files" and data.class_names == ["neg", "pos"] and len(data.y) == 60


def test_an_export_left_half_written_by_a_killed_process_is_removed(tmp_path):
    from conftest import export_tiny_image_model
    stale = tmp_path / "tiny_image" / ".tmp-1-killed"
    stale.mkdir(parents=True)
    (stale / "saved_model.pb").write_bytes(b"half")
    os.utime(stale, (1, 1))   # older than this process
    version = export_tiny_image_model(tmp_path)
    assert not stale.exists() and version == tmp_path / "tiny_image" / "1"
    assert sorted(p.name for p in (tmp_path / "tiny_image").iterdir()) == ["1"]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_cross_validation_logs_fold_k_of_n_with_an_eta(tmp_path, caplog):
    import logging
    from conftest import run_cli
    with caplog.at_level(logging.INFO, logger="cnnapp.training.run"):
        run_cli(["train-text", "--cv", "2", "--repeats", "2", "--epochs", "1", "--feature-maps", "2",
                 "--embedding-dim", "4", "--no-export", "--name", "cv", "--run-dir", tmp_path])
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("cv ")]
    assert [line.split(":")[0] for line in lines[:5] if "/" in line.split(":")[0]] == \
        ["cv 1/4", "cv 2/4", "cv 3/4", "cv 4/4"], lines
    assert "min left" not in lines[0] and all("min left" in line for line in lines if line.startswith(("cv 2/4",
                                                                                                       "cv 4/4")))


def test_predict_skips_blank_lines_and_takes_a_file_name_as_text_only_when_asked(tmp_path, model_base):
    import io
    from cnnapp.errors import CnnappError
    from cnnapp.inference import predict_rows
    lines = tmp_path / "lines.txt"
    lines.write_text("a good film\n\n   \nso so\r\n")
    model = model_base / "tiny_text"
    assert [r["input"] for r in predict_rows(model, [], file=str(lines)).rows] == ["a good film", "so so"]
    assert [r["input"] for r in predict_rows(model, [], stdin=io.BytesIO(b"\n\ndull\n\n")).rows] == ["dull"]
    with pytest.raises(CnnappError, match="--as-text"):
        predict_rows(model, [str(lines)])
    assert [r["input"] for r in predict_rows(model, [str(lines)], as_text=True).rows] == [str(lines)]


def test_predict_says_what_it_is_loading_on_a_terminal(model_base):
    import pty
    master, slave = pty.openpty()
    try:
        done = subprocess.run(cnnapp("predict", model_base / "tiny_text", "a good film"), stdout=subprocess.PIPE,
                              stderr=slave, env=ENV, timeout=300, text=True)
        os.close(slave)
        err = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:   # EIO: the terminal's writer is gone
                break
            if not chunk:
                break
            err += chunk
    finally:
        os.close(master)
    assert done.returncode == 0 and done.stdout.startswith("a good film: ")
    assert f"loading {model_base / 'tiny_text'} ..." in err.decode()


def test_resume_fingerprint_holds_the_loss_settings_only_when_on():
    """A backup trained under other class weights or label smoothing is not resumed silently; one
    written before these were fingerprinted still matches a run that leaves them off."""
    import numpy as np
    from cnnapp.config import TrainConfig
    from cnnapp.data import Splits
    from cnnapp.training.resume import RESUME_TRAIN_FIELDS, fingerprint_differences, resume_fingerprint
    x, y = np.array(["a b", "c d"], dtype=object), np.array([0, 1])
    splits = Splits(x, y, x, y, None, None, ["neg", "pos"])
    plain = resume_fingerprint(splits, None, TrainConfig(), {})
    weighted = resume_fingerprint(splits, None, TrainConfig(class_weight="balanced"), {})
    smoothed = resume_fingerprint(splits, None, TrainConfig(label_smoothing=0.1), {})
    assert set(plain["training"]) == set(RESUME_TRAIN_FIELDS)          # as before: old backups still match
    assert fingerprint_differences(plain, weighted) == ['training.class_weight: null -> "balanced"']
    assert fingerprint_differences(plain, smoothed) == ["training.label_smoothing: null -> 0.1"]
