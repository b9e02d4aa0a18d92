"""`cnnapp inspect`, `cnnapp summary` and `cnnapp models`: what a network is and what it learned."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cnnapp.cli.errors import library_errors
from cnnapp.cli.options import (IMAGE_MODEL_FIELDS, TEXT_MODEL_FIELDS, ImageSize, ModelArg, checked_model_choice,
                                image_model_options, text_model_options)


@click.command()
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where image plots go [default: RUN_DIR/inspect].")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="N-grams to show per sentence.")
@click.option("--class", "class_name", default=None, metavar="NAME",
              help="The class Grad-CAM explains [default: each image's predicted class].")
@click.option("--file", "input_file", type=str, default=None,
              help="Sentence models: one sentence per line ('-' for standard input); blank lines are skipped.")
@click.option("--as-text", is_flag=True, help="Sentence models: inspect arguments even when they name files.")
@click.option("--json", "as_json", is_flag=True)
@library_errors
def inspect(run_dir, inputs, out, top, class_name, input_file, as_text, as_json):
    """See what a trained model learned (RUN_DIR is runs/<name>, or an export saved_models/<name>[/<version>]).

    Images: writes the first layer's filters, each conv block's feature maps and a Grad-CAM overlay
    for every input image as PNGs. Sentences: prints the n-grams whose filters won max-over-time
    pooling and pushed the predicted class most. Both come from the model's `explain` signature.
    """
    if not inputs and input_file is None:
        raise click.UsageError("give image files or sentences to inspect.")
    from cnnapp.inspection import inspect_images, inspect_sentences, open_explainer
    explainer = open_explainer(run_dir)
    if explainer.kind == "image":
        if input_file is not None:
            raise click.ClickException(f"--file: is for sentence models; give image files, folders or globs. "
                                       f"Received: {input_file}")
        out_dir = Path(out or Path(run_dir) / "inspect")
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise click.ClickException(f"--out: cannot create the folder ({e.strerror}). Received: {out_dir}") from None
        results = inspect_images(explainer, inputs, out_dir, class_name=class_name)
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        for path, res in results.items():
            click.echo(f"{path}: predicted {res['predicted']}")
            for name, layer in res["layers"].items():
                click.echo(f"  {name:8s} {'x'.join(map(str, layer['shape'])):>10s}  "
                           f"{layer['active_fraction']:.0%} active  -> {layer['plot']}")
            for key, label in (("gradcam", "grad-cam"), ("hirescam", "hirescam")):
                cam = res[key]
                where = "nothing positive" if cam["empty"] else f"peak at row {cam['peak'][0]} col {cam['peak'][1]}"
                click.echo(f"  {label:8s} {cam['class']!r} on {cam['layer']}, {where}  -> {cam['plot']}")
        click.echo(f"filters: {out_dir / 'filters.png'}")
        return
    from cnnapp.inference.inputs import check_sentences, read_sentence_lines   # predict's readers and errors
    sentences = list(inputs)
    check_sentences(sentences, as_text=as_text)   # `inspect runs/text-run notes.txt` is predict's mistake too
    if input_file is not None:
        sentences += read_sentence_lines(input_file)
    results = inspect_sentences(explainer, sentences, top=top)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    for res in results:
        click.echo(f"{res['sentence']!r}: {res['predicted']} {max(res['probabilities']):.3f}")
        for g in res["ngrams"]:
            click.echo(f"  {g['contribution']:+8.3f}  {g['ngram']!r} (width {g['width']}, {g['filters']} filter(s))")


@click.group()
def summary():
    """Print a model's layers, output shapes, activations, parameters and cost, without training."""


model_option = click.option("--model", "model_name", default=None, metavar="NAME",
                            help="A registered model (`cnnapp models`). [default: the kind's default]")
model_arg_option = click.option("--model-arg", "model_args", type=ModelArg(), multiple=True,
                                help="KEY=VALUE for any keyword of the model's factory (repeatable).")


@summary.command("image")
@click.option("--num-classes", type=click.IntRange(min=2), default=10, show_default=True)
@click.option("--image-size", type=ImageSize(), default="28", show_default=True, help="N or HxW.")
@click.option("--channels", type=click.Choice(["1", "3"]), default="1", show_default=True)
@model_option
@model_arg_option
@image_model_options
@library_errors
def summary_image(num_classes, image_size, channels, **kw):
    """An image model for the given options (default input 28x28x1)."""
    data_args = {"input_shape": (*image_size, int(channels)), "num_classes": num_classes}
    choice = checked_model_choice(kw, IMAGE_MODEL_FIELDS, kind="image", data_args=data_args, training=False)
    from cnnapp.models.summary import summarize
    click.echo(summarize("image", choice, data_args))


@summary.command("text")
@click.option("--num-classes", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=2), default=20000, show_default=True)
@click.option("--sequence-length", type=click.IntRange(min=1), default=50, show_default=True)
@model_option
@model_arg_option
@text_model_options
@library_errors
def summary_text(num_classes, vocab_size, sequence_length, **kw):
    """A sentence model for the given options (default sequence length 50)."""
    data_args = {"sequence_length": sequence_length, "vocab_size": vocab_size, "num_classes": num_classes}
    choice = checked_model_choice(kw, TEXT_MODEL_FIELDS, kind="text", data_args=data_args, training=False)
    from cnnapp.models.summary import summarize
    click.echo(summarize("text", choice, data_args))


@click.command()
@click.option("--json", "as_json", is_flag=True)
def models(as_json):
    """List the registered models: name, kind and what each is."""
    from cnnapp.models import registry
    specs = registry()
    if as_json:
        click.echo(json.dumps([{"name": s.name, "kind": s.kind, "description": s.description,
                                "options": {k: repr(v) for k, v in s.options().items()}} for s in specs.values()],
                              indent=2))
        return
    width = max(len(n) for n in specs)
    for spec in specs.values():
        click.echo(f"{spec.name:{width}s}  {spec.kind:5s}  {spec.description}")
