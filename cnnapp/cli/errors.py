"""The one place the library's errors become the CLI's: a `CnnappError` is a one-line `Error: ...`
with exit code 1 (click's own usage errors keep exit code 2). Anything else is a bug and keeps its
traceback. Every command that calls the library is wrapped in `library_errors`, `serve` included.
"""

from __future__ import annotations

import functools

import click


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
