"""Keep TensorFlow's C++ start-up log out of the user's terminal, without turning anything off.

On TensorFlow 2.21 the first lines come from static initialisers of its shared libraries, before
TensorFlow reads TF_CPP_MIN_LOG_LEVEL and before absl's logging is initialised, so no environment
variable reaches them (TF_CPP_MIN_LOG_LEVEL, TF_CPP_MAX_VLOG_LEVEL, GLOG_minloglevel and
ABSL_MIN_LOG_LEVEL were all tried): each of the two libraries prints

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:... port.cc:153] oneDNN custom operations are on. You may see slightly different ...

(plus cpu_feature_guard's note on CPUs without AVX-512). The only switch is at the source: while
`tensorflow` is first imported, file descriptor 2 points at a temporary file; afterwards it is
restored and every line that is not such an info/warning start-up line is written back to stderr,
so a real error during the import still reaches the user. oneDNN stays on
(`TF_ENABLE_ONEDNN_OPTS` is not touched).

    >>> hide_tensorflow_startup_log()     # before anything imports tensorflow; a no-op after
"""

from __future__ import annotations

import importlib.abc
import os
import re
import sys
import tempfile

# absl/glog-formatted info and warning lines: `I0000 00:00:1796667988.239842    4442 port.cc:153] ...`
_ABSL_INFO = re.compile(r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] ")
_NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "To enable the following instructions:",   # the second line of cpu_feature_guard's note
)


def is_startup_noise(line: str) -> bool:
    """A line of TensorFlow's start-up log (info or warning), as opposed to an error or Python output."""
    return bool(_ABSL_INFO.match(line)) or line.startswith(_NOISE)


def hide_tensorflow_startup_log() -> None:
    """Import TensorFlow, whenever something first does, with its start-up lines filtered out of fd 2."""
    if "tensorflow" in sys.modules or any(isinstance(f, _QuietTensorFlowFinder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _QuietTensorFlowFinder())


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` with the other finders and wraps its loader once; then steps aside."""

    def find_spec(self, fullname, path, target=None):
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            spec = finder.find_spec(fullname, path, target) if hasattr(finder, "find_spec") else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _QuietLoader(spec.loader)
                return spec
        return None


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        # The module keeps TensorFlow's own loader (importlib.resources and friends ask it).
        module.__loader__ = module.__spec__.loader = self.loader
        with _stderr_filtered():
            self.loader.exec_module(module)


class _stderr_filtered:
    """fd 2 -> a temporary file for the duration; then what is not start-up noise goes to stderr."""

    def __enter__(self):
        sys.stderr.flush()
        self.log = tempfile.TemporaryFile()
        self.saved_fd = os.dup(2)
        os.dup2(self.log.fileno(), 2)
        return self

    def __exit__(self, *exc):
        try:
            sys.stderr.flush()
        finally:
            os.dup2(self.saved_fd, 2)
            os.close(self.saved_fd)
        self.log.seek(0)
        text = self.log.read().decode("utf-8", errors="replace")
        self.log.close()
        kept = [line for line in text.splitlines(keepends=True) if not is_startup_noise(line)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
        return False
