"""The cnnapp command line: thin click commands that build a config, call one library function and
render its result. One file per command group; shared options in `options.py`.

TensorFlow is imported inside the commands, never at module import, so `cnnapp --help`, `cnnapp
models` and the argument errors found before data is read answer at once (tests/test_quiet.py checks
that `tensorflow` is not in `sys.modules` after them). Library errors become one-line messages in
`errors.library_errors`.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from cnnapp import __version__
from cnnapp.cli import inspect, launch, predict, serve, sweep, train
from cnnapp.quiet import hide_tensorflow_startup_log


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnnapp")
@click.option("-v", "--verbose", is_flag=True,
              help="Debug logging, and TensorFlow's own C++ log (its start-up lines included), hidden otherwise.")
def cli(verbose: bool):
    """Train, inspect and serve convolutional classifiers for images and sentences."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    if not verbose:
        # Before TensorFlow is imported: its start-up lines (oneDNN, absl) are printed before it reads
        # any environment variable, so they are filtered at the file descriptor (cnnapp.quiet); the
        # rest of its C++ info log (and libjpeg's error lines: cnnapp reports bad files itself, by
        # name) by TF_CPP_MIN_LOG_LEVEL.
        hide_tensorflow_startup_log()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    cli(prog_name="cnnapp")


for command in (train.train_image, train.train_text, predict.predict, inspect.inspect, inspect.summary,
                inspect.models, serve.serve, launch.launch, sweep.sweep):
    cli.add_command(command)
