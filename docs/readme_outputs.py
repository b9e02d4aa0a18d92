"""`make readme`: run the commands behind README.md's output blocks and paste what they print.

A code block is regenerated when the line before its opening fence is a marker:

    <!-- output -->                    each `$ command` line of the block (with its `\\` continuation
                                       lines) is run; what it prints replaces the lines under it
    <!-- output: COMMAND -->           the whole block becomes what COMMAND prints
    <!-- output: COMMAND | abridge 3 6 -->   ... only its first 3 and last 6 lines, with `...` between
    <!-- output: bash $README_EXAMPLES/X.sh -->   a script of docs/readme_examples/ that makes what its
                                       commands need, then prints each `$ command` and its output

Everything runs with bash (stdout and stderr together, as a terminal shows them) in a fresh scratch
folder, so exports are version 1 as on a fresh clone, with the virtual environment first on PATH and
`../shared` beside it pointing at this repository's `../shared`. The demo (`make demo`'s commands,
SETUP below) runs there first; a marker naming one of those commands gets the output it printed then.
A command ending in `&` (a server) runs in the background until the end; the next command waits
until its REST port answers. TensorFlow's own start-up lines (saved_model_cli prints them) are left out.
A command that fails other than with cnnapp's one-line `Error: ...` (a traceback, a crash) stops the
run and leaves README.md as it was.

    python docs/readme_outputs.py [--readme README.md] [--keep DIR] [--only TEXT [--skip-setup]]
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Scripts for blocks that need files made first or a run killed part-way (a truncated JPEG, a killed
# training): each prints its `$ command` lines and their real output; a marker names one as
# `<!-- output: bash $README_EXAMPLES/NAME.sh -->`.
EXAMPLES = ROOT / "docs" / "readme_examples"
SETUP = ["cnnapp train-image --name digits",
         "python -m cnnapp.data.image.digits --write-samples runs/digits-samples",
         "python -m cnnapp.data.image.digits --write-samples samples",
         "cnnapp train-text --name demo-sentences"]
MARKER = re.compile(r"^<!-- output(?::\s*(?P<command>.*?))?\s*-->$")
# TensorFlow's C++ start-up lines, printed before it reads any log level (saved_model_cli prints them;
# cnnapp filters them itself, see cnnapp/quiet.py): left out of the README.
TF_STARTUP = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\).*|I0000 .*cpu_feature_guard.*"
                        r"|To enable the following instructions: .*|.*oneDNN custom operations are on.*)\n", re.M)
ABRIDGE = re.compile(r"^(?P<command>.*?)\s*\|\s*abridge\s+(?P<head>\d+)\s+(?P<tail>\d+)$")


class Runner:
    """Runs commands in one scratch folder; remembers the setup's outputs; owns the background servers."""

    def __init__(self, work: Path):
        self.work = work
        self.env = {**os.environ, "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
                    "COLUMNS": "100", "PYTHONUNBUFFERED": "1", "README_EXAMPLES": str(EXAMPLES)}
        self.env.pop("TF_CPP_MIN_LOG_LEVEL", None)       # what a user's shell has: the CLI quiets TensorFlow itself
        self.cache: dict[str, str] = {}
        self.servers: list[subprocess.Popen] = []

    def run(self, command: str) -> str:
        if command in self.cache:
            return self.cache[command]
        print(f"$ {command}", file=sys.stderr, flush=True)
        if command.rstrip().endswith("&"):
            return self._background(command.rstrip()[:-1])
        done = subprocess.run(["bash", "-o", "pipefail", "-c", command], cwd=self.work, env=self.env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = TF_STARTUP.sub("", done.stdout)
        # A failure is pasted only as cnnapp's one-line error (the README shows some on purpose), never a traceback.
        if (done.returncode != 0 and not output.startswith("Error: ")) or "Traceback (most recent call last)" in output:
            raise SystemExit(f"README.md left as it was: `{command}` failed (exit {done.returncode}):\n"
                             + "\n".join(output.rstrip().split("\n")[-15:]))
        return output

    def _background(self, command: str) -> str:
        server = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.work, env=self.env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.servers.append(server)
        words = shlex.split(command)
        port = next((w.split("=", 1)[1] for w in words if re.match(r"--rest[_-]api[_-]port=", w)), None)
        for flag in ("--rest_api_port", "--rest-api-port"):
            if flag in words:
                port = words[words.index(flag) + 1]
        url, deadline = f"http://127.0.0.1:{port or 8501}/v1/models", time.monotonic() + 300
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise SystemExit(f"the server stopped (exit {server.returncode}): {command}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return ""
            except OSError:
                time.sleep(0.5)
        raise SystemExit(f"the server did not answer {url} in 300 s: {command}")

    def close(self) -> None:
        for server in self.servers:
            server.terminate()
            server.wait(timeout=60)


def prompt_commands(body: list[str]) -> list[tuple[list[str], list[str]]]:
    """A console block -> [(the command's lines, the output lines under it)]; text before the first prompt is kept."""
    segments: list[tuple[list[str], list[str]]] = [([], [])]
    continued = False
    for line in body:
        if line.startswith("$ ") or continued:
            if not continued:
                segments.append(([], []))
            segments[-1][0].append(line)
            continued = line.endswith("\\")
        else:
            segments[-1][1].append(line)
    return segments


def command_text(lines: list[str]) -> str:
    return "\n".join(lines)[2:]


def regenerate(text: str, runner: Runner, only: str | None = None) -> list[tuple[str, str]]:
    """[(a marked block as the README has it, the block with fresh output)], marker line included;
    with `only`, just the blocks whose text (marker included) contains it."""
    lines, blocks, i = text.split("\n"), [], 0
    while i < len(lines):
        match = MARKER.match(lines[i].strip())
        i += 1
        if not match:
            continue
        if not lines[i].startswith("```"):
            raise SystemExit(f"README line {i}: an output marker must sit just above a code block")
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        body = lines[i + 1:end]
        if only is not None and only not in "\n".join(lines[i - 1:end + 1]):
            i = end + 1
            continue
        if match["command"]:
            command, head, tail = match["command"], None, None
            if abridge := ABRIDGE.match(command):
                command, head, tail = abridge["command"], int(abridge["head"]), int(abridge["tail"])
            new = runner.run(command).rstrip("\n").split("\n")
            if head is not None and len(new) > head + tail + 1:
                new = new[:head] + ["..."] + new[-tail:]
        else:
            new = []
            for command_lines, old_output in prompt_commands(body):
                if not command_lines:               # text before the first prompt
                    new += old_output
                    continue
                printed = runner.run(command_text(command_lines)).rstrip("\n")
                new += command_lines + (printed.split("\n") if printed else [])
                if old_output and old_output[-1] == "":
                    new.append("")                  # the blank line between a block's commands
        blocks.append(("\n".join(lines[i - 1:end + 1]), "\n".join([lines[i - 1], lines[i]] + new + [lines[end]])))
        i = end + 1
    return blocks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md")
    parser.add_argument("--keep", type=Path, default=None, help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--only", default=None, metavar="TEXT", help="regenerate only the blocks that contain TEXT")
    parser.add_argument("--skip-setup", action="store_true",
                        help="with --only, for blocks that need none of the demo's models (the --cv runs)")
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="cnnapp-readme-")) if args.keep is None else args.keep.resolve()
    work = scratch / "work"
    work.mkdir(parents=True, exist_ok=True)
    if not (scratch / "shared").exists() and (ROOT.parent / "shared").is_dir():
        (scratch / "shared").symlink_to(ROOT.parent / "shared")
    runner = Runner(work)
    try:
        for command in [] if args.skip_setup else SETUP:
            runner.cache[command] = runner.run(command)
        blocks = regenerate(args.readme.read_text(), runner, args.only)
    finally:
        runner.close()
        if args.keep is None:
            shutil.rmtree(scratch, ignore_errors=True)
    # Read again: the README may have been edited while the commands ran; only the marked blocks change.
    text = new = args.readme.read_text()
    for old, fresh in blocks:
        if old not in new:
            print(f"skipped a block edited meanwhile (run make readme again):\n{old[:200]}", file=sys.stderr)
        new = new.replace(old, fresh, 1)
    args.readme.write_text(new)
    print(f"{args.readme}: {sum(o != f for o, f in blocks)} of {len(blocks)} output blocks changed"
          f"{'' if new != text else ' (none)'}", file=sys.stderr)


if __name__ == "__main__":
    main()
