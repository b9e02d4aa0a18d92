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
        with fd2_filtered():
            self.loader.exec_module(module)


_show_everything = False


def show_everything() -> None:
    """`--verbose`: from now on `fd2_filtered` passes every line on (the LiteRT converter's and
    runtime's info lines included)."""
    global _show_everything
    _show_everything = True


class fd2_filtered:
    """fd 2 -> a temporary file for the duration; then every line that `noise` does not match goes on to
    stderr (C/C++ libraries write there past Python: TensorFlow's start-up log, the LiteRT converter's
    and runtime's info lines). After `show_everything()` (`--verbose`) every line goes on.

    >>> with fd2_filtered(lambda line: line.startswith("INFO: ")):
    ...     interpreter.allocate_tensors()
    """

    def __init__(self, noise=None):
        self.noise = (lambda line: False) if _show_everything else (noise or is_startup_noise)

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
        kept = [line for line in text.splitlines(keepends=True) if not self.noise(line)]
        if kept:
            sys.stderr.write("".join(kept))
            sys.stderr.flush()
        return False


# libjpeg's own lines (jerror.h), which TensorFlow's JPEG decoder lets it print straight to fd 2 for every
# damaged file it reads ("Corrupt JPEG data: 2 extraneous bytes before marker 0xd9", "Premature end of
# JPEG file", "Improper call to JPEG library in state 201"): cnnapp reports a file it cannot read by name,
# and one it can (a tf.data epoch re-reads it) must not print a line per read.
_LIBJPEG = re.compile(
    r"^(Corrupt JPEG data: |Premature end of JPEG file$|Improper call to JPEG library in state \d+$|"
    r"Unsupported color conversion request$|Invalid JPEG file structure: |Not a JPEG file: starts with |"
    r"Bogus marker length$|Unsupported marker type 0x|Warning: unknown JFIF revision number |"
    r"Invalid SOS parameters for sequential JPEG$|Inconsistent progression sequence |"
    r"Huffman table 0x[0-9a-f]+ was not defined$|Corrupt JPEG data$|Bogus Huffman table definition$)")


def is_libjpeg_line(line: str) -> bool:
    """A warning or error line that libjpeg itself printed (it names no file; cnnapp's own message does)."""
    return bool(_LIBJPEG.match(line.rstrip("\r\n")))


def drop_libjpeg_lines() -> None:
    """For the rest of the process, fd 2 is a pipe read by a thread that passes every line on to the real
    stderr except libjpeg's (`is_libjpeg_line`). Python's own `sys.stderr` writes to the real stderr
    directly, so tracebacks and logging never wait on the thread; only C/C++ writes pass through it, and
    at exit what they left in the pipe is written out first. Idempotent; for the CLI process only.

    >>> drop_libjpeg_lines()      # in the console script, before any image is decoded
    """
    global _real_stderr_fd
    if _real_stderr_fd is not None:
        return
    import atexit
    import io
    import threading
    sys.stderr.flush()
    _real_stderr_fd = os.dup(2)
    read_fd, write_fd = os.pipe()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    sys.stderr = io.TextIOWrapper(open(os.dup(_real_stderr_fd), "wb", buffering=0), encoding=sys.stderr.encoding,
                                  errors="backslashreplace", line_buffering=True)
    thread = threading.Thread(target=_pass_on, args=(read_fd, _real_stderr_fd), name="cnnapp-stderr", daemon=True)
    thread.start()

    def restore():
        os.dup2(_real_stderr_fd, 2)       # closes the pipe's last writer (children that hold it aside)
        thread.join(timeout=2.0)
    atexit.register(restore)


_real_stderr_fd: int | None = None


def _pass_on(read_fd: int, out_fd: int) -> None:
    with open(read_fd, "rb", buffering=0) as pipe:
        pending = b""
        while chunk := pipe.read(65536):
            *lines, pending = (pending + chunk).split(b"\n")
            kept = b"".join(line + b"\n" for line in lines if not is_libjpeg_line(line.decode("utf-8", "replace")))
            if kept:
                os.write(out_fd, kept)
        if pending and not is_libjpeg_line(pending.decode("utf-8", "replace")):
            os.write(out_fd, pending)
