"""`cnnapp predict`: answer from an exported model (the readers and rows are `cnnapp.inference`'s)."""

from __future__ import annotations

import json
import sys

import click

from cnnapp.cli.errors import library_errors


@click.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option("--file", "input_file", type=str, default=None,
              help="Sentence models: one sentence per line ('-' for standard input); blank lines are skipped.")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--as-text", is_flag=True, help="Sentence models: classify arguments even when they name files.")
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output.")
@click.option("--runtime", type=click.Choice(["litert", "savedmodel"]), default=None,
              help="litert: the export's LiteRT model, without TensorFlow (fast to start); savedmodel: the "
                   "SavedModel in TensorFlow. Default: litert when the export has one (assets.extra/litert/).")
@click.option("--max-input-bytes", type=click.IntRange(min=1), default=None,
              help="Refuse an image file or a sentence line longer than this, without reading the rest. "
                   "Default: 64 MiB a file, 1 MiB a line.")
@library_errors
def predict(model, inputs, input_file, top_k, as_text, as_json, runtime, max_input_bytes):
    """Answer from an exported model: image files/folders/globs, or sentences.

    MODEL is a version folder or saved_models/<name> (its latest version). Sentences come from
    the arguments, --file, or standard input when neither is given. A sentence longer than the
    model reads is cut after the words it reads (a note says so).
    """
    from cnnapp.inference import predict_rows
    if sys.stderr.isatty():   # loading the model (TensorFlow for a SavedModel) may take seconds: say so on a terminal
        click.echo(f"loading {model} ...", err=True)
    answer = predict_rows(model, inputs, file=input_file, top_k=top_k, as_text=as_text, runtime=runtime,
                          max_input_bytes=max_input_bytes)
    for note in answer.notes:
        click.echo(note, err=True)
    if as_json:
        click.echo(json.dumps(answer.as_json(), indent=2))
    else:
        for row in answer.rows:
            if "error" in row:
                click.echo(f"{row['input']}: error: {row['error']}", err=True)
            else:
                click.echo(f"{row['input']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"]))
    if answer.failed:
        sys.exit(1)
