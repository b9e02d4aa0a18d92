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
from cnnapp.cli.allocator import configure_allocators
from cnnapp.cli import inspect, launch, predict, serve, sweep, train
from cnnapp.quiet import drop_libjpeg_lines, hide_tensorflow_startup_log, show_everything


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnnapp")
@click.option("-v", "--verbose", is_flag=True,
              help="Debug logging, and TensorFlow's own C++ log (its start-up lines included), hidden otherwise.")
def cli(verbose: bool):
    """Train, inspect and serve convolutional classifiers for images and sentences."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    if verbose:
        show_everything()       # the LiteRT converter's and runtime's C++ lines too
    else:
        # Before TensorFlow is imported: its start-up lines (oneDNN, absl) are printed before it reads
        # any environment variable, so they are filtered at the file descriptor (cnnapp.quiet); the
        # rest of its C++ info log (and libjpeg's error lines: cnnapp reports bad files itself, by
        # name) by TF_CPP_MIN_LOG_LEVEL.
        hide_tensorflow_startup_log()
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    group_options = _group_options(sys.argv[1:])
    if sys.argv[1 + len(group_options):][:1] != ["serve"]:
        # Before TensorFlow and its thread pools exist (cli/allocator.py). Not for `serve`: its request
        # threads each call the model, and two malloc arenas made them wait on each other (REST text,
        # batching off, 32 clients: 0.88x of the default allocators' requests/s; docs/bench/serve.md).
        configure_allocators()
    if not {"-v", "--verbose"} & set(group_options):
        # libjpeg prints its warnings ("Corrupt JPEG data: ...") to fd 2 from inside TensorFlow's decoder,
        # past any log level; cnnapp names the files it cannot read itself (cnnapp.quiet).
        drop_libjpeg_lines()
    cli(prog_name="cnnapp")


def _group_options(args):
    """The arguments before the command name (`cnnapp -v predict ...`: ['-v'])."""
    return args[:next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))]


for command in (train.train_image, train.train_text, predict.predict, inspect.inspect, inspect.summary,
                inspect.models, serve.serve, launch.launch, sweep.sweep):
    cli.add_command(command)
