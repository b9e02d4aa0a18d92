"""The CLI's start-up is quiet and light: TensorFlow's C++ start-up lines never reach the user, and the
commands that need no TensorFlow (help, `models`, argument errors found before data is read) do not
import it. Each check runs the real CLI in a fresh interpreter (an in-process run would find
TensorFlow already imported by other tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cnnapp.quiet import is_startup_noise

# oneDNN on, as on the CPUs where TensorFlow turns it on by itself: its start-up line is the one
# TF_CPP_MIN_LOG_LEVEL cannot silence.
ENV = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1", "PYTHONUNBUFFERED": "1"}
ENV.pop("TF_CPP_MIN_LOG_LEVEL", None)
STARTUP_MARKERS = ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard")


def cnnapp(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnapp", *args], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=300)


def test_a_command_that_imports_tensorflow_prints_none_of_its_startup_lines(tmp_path):
    # summary builds a real Keras model: TensorFlow is imported and does run ops.
    result = cnnapp("summary", "text", "--feature-maps", "2", "--region-sizes", "2", "--vocab-size", "10")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Total params" in result.stdout
    leaked = [line for line in result.stderr.splitlines() if any(m in line for m in STARTUP_MARKERS)]
    assert not leaked, result.stderr[-2000:]


def test_verbose_shows_them(tmp_path):
    result = cnnapp("--verbose", "summary", "text", "--feature-maps", "2", "--region-sizes", "2", "--vocab-size", "10")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "oneDNN custom operations are on" in result.stderr, result.stderr[-2000:]


def test_what_the_filter_drops_and_keeps():
    assert is_startup_noise("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
    assert is_startup_noise("I0000 00:00:1796667988.239842    4442 port.cc:153] oneDNN custom operations are on.\n")
    assert is_startup_noise("W0000 00:00:1796667988.2398 12 cpu_feature_guard.cc:227] This TensorFlow binary\n")
    assert not is_startup_noise("E0000 00:00:1796667988.239842    4442 cuda_dnn.cc:8310] Unable to load cuDNN\n")
    assert not is_startup_noise("Traceback (most recent call last):\n")
    assert not is_startup_noise("ImportError: libfoo.so: cannot open shared object file\n")


IMPORTS_AFTER = """
import json
import sys
from cnnapp.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="cnnapp")
except SystemExit as e:
    code = e.code
print("MODULES", json.dumps({"code": code, "tensorflow": "tensorflow" in sys.modules, "keras": "keras" in sys.modules}))
"""

LIGHT = [
    ("help", ["--help"], 0),
    ("models", ["models"], 0),
    ("models-json", ["models", "--json"], 0),
    ("train-image-help", ["train-image", "--help"], 0),
    ("train-text-help", ["train-text", "--help"], 0),
    ("predict-help", ["predict", "--help"], 0),
    ("serve-help", ["serve", "--help"], 0),
    ("summary-image-help", ["summary", "image", "--help"], 0),
    ("sweep-text-help", ["sweep", "text", "--help"], 0),
    ("summary-model-unknown", ["summary", "image", "--model", "nope"], 1),
    ("train-image-model-unknown", ["train-image", "--model", "nope"], 1),
    ("train-text-model-wrong-kind", ["train-text", "--model", "vgg"], 1),
    ("train-image-model-arg-unknown", ["train-image", "--model-arg", "nope=1"], 1),
    ("train-image-model-arg-typed", ["train-image", "--model-arg", "filters=abc"], 1),
    ("train-image-learning-rate-nan", ["train-image", "--learning-rate", "nan"], 2),
    ("train-text-feature-maps-huge", ["train-text", "--feature-maps", "1000000000"], 1),
    ("summary-image-filters-huge", ["summary", "image", "--filters", "100000000"], 1),
]


@pytest.mark.parametrize("case, argv, exit_code", LIGHT, ids=[c[0] for c in LIGHT])
def test_no_tensorflow_import_where_none_is_needed(case, argv, exit_code, tmp_path):
    result = subprocess.run([sys.executable, "-c", IMPORTS_AFTER, *argv], capture_output=True, text=True, env=ENV,
                            cwd=tmp_path, timeout=120)
    line = [ln for ln in result.stdout.splitlines() if ln.startswith("MODULES")]
    assert line, result.stdout[-1000:] + result.stderr[-2000:]
    state = json.loads(line[-1].split(" ", 1)[1])
    assert state == {"code": exit_code, "tensorflow": False, "keras": False}, result.stdout[-1000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]


def test_fd2_filter_drops_noise_and_verbose_lets_it_through(capfd, monkeypatch):
    """What C/C++ code writes to fd 2 inside `fd2_filtered` (the LiteRT converter's and runtime's info
    lines) is dropped when it is noise and kept otherwise; after `show_everything()` (`--verbose`)
    every line goes on."""
    from cnnapp import quiet
    monkeypatch.setattr(quiet, "_show_everything", False)
    with quiet.fd2_filtered(lambda line: line.startswith("INFO: ")):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\nan error line\n")
    assert capfd.readouterr().err == "an error line\n"
    quiet.show_everything()
    with quiet.fd2_filtered(lambda line: line.startswith("INFO: ")):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
    assert "XNNPACK delegate" in capfd.readouterr().err
