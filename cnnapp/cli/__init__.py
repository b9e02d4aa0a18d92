"""The cnnapp command line: thin click commands that build a config, call one library function and
render its result. One file per command group; shared options in `options.py`.

TensorFlow is imported inside the commands, never at module import, so `cnnapp --help` is instant.
This module is the one place library errors (`CnnappError`) become one-line `Error: ...` messages
with exit code 1.
"""

from __future__ import annotations

import functools
import logging
import os
import sys

import click

from cnnapp import __version__


def library_errors(fn):
    """Turn the library's CnnappError into a one-line click error (exit 1)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from cnnapp.errors import CnnappError
        try:
            return fn(*args, **kwargs)
        except CnnappError as e:
            raise click.ClickException(str(e)) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cnnapp")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
def cli(verbose: bool):
    """Train, inspect and serve convolutional classifiers for images and sentences."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s" if verbose else "%(message)s")
    # Before TensorFlow is imported: keep its C++ info logs (and libjpeg's error lines: cnnapp reports
    # bad files itself, by name) out of the user's terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main():
    cli(prog_name="cnnapp")


from cnnapp.cli import inspect, launch, predict, serve, sweep, train  # noqa: E402

for command in (train.train_image, train.train_text, predict.predict, inspect.inspect, inspect.summary,
                inspect.models, serve.serve, launch.launch, sweep.sweep):
    cli.add_command(command)
