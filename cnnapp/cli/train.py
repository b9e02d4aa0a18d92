"""`cnnapp train-image` and `cnnapp train-text`: parse, build the task and configs, `run`, render."""

from __future__ import annotations

import dataclasses

import click

from cnnapp.cli.errors import library_errors
from cnnapp.cli.options import (IMAGE_MODEL_FIELDS, TEXT_MODEL_FIELDS, checked_model_choice, class_names_option,
                                cluster_from_environment, image_data_options, image_model_options, text_data_options,
                                text_model_options, text_task_options, train_config, train_options)


def start(kind: str, kw: dict):
    """(train config, model choice, strategy): the strategy first, as tf.distribute requires; under
    `cnnapp launch` the worker made it already and passes it in the click context. The model and its
    options are checked first, before TensorFlow is imported or any data read."""
    obj = click.get_current_context().obj or {}
    known = {"input_shape": (1, 1, int(kw["channels"]))} if kind == "image" and kw.get("channels") else {}
    model = checked_model_choice(kw, IMAGE_MODEL_FIELDS if kind == "image" else TEXT_MODEL_FIELDS, kind=kind,
                                 data_args=known)
    train = train_config(kw, cluster=obj["cluster"] if "cluster" in obj else cluster_from_environment(),
                         dump_weights_dir=obj.get("dump_weights_dir"))
    from cnnapp.training.runtime import make_strategy
    return train, model, obj.get("strategy") or make_strategy(train.strategy, train.cluster)


@click.command("train-image")
@image_data_options
@class_names_option
@image_model_options
@train_options("image")
@library_errors
def train_image(**kw):
    """Train an image CNN, evaluate it, and export a SavedModel."""
    tta = kw.pop("tta")
    train, model, strategy = start("image", kw)
    train = dataclasses.replace(train, tta=tta)
    from cnnapp.training.run import run
    report(run(image_task(kw), train=train, model=model, strategy=strategy))


@click.command("train-text")
@text_data_options
@class_names_option
@text_task_options
@text_model_options
@train_options("text")
@library_errors
def train_text(**kw):
    """Train the Kim / Zhang & Wallace sentence CNN, evaluate it, and export a SavedModel."""
    train, model, strategy = start("text", kw)
    from cnnapp.training.run import run
    report(run(text_task(kw), train=train, model=model, strategy=strategy))


def image_task(kw: dict):
    """The ImageTask of the image data options (popped from `kw`)."""
    from cnnapp.data import parse_class_names
    from cnnapp.data.image import ImageRequest
    from cnnapp.tasks.images import ImageTask
    channels = kw.pop("channels")
    request = ImageRequest(data=kw.pop("data"), dataset=kw.pop("dataset"), data_dir=kw.pop("data_dir"),
                           image_size=kw.pop("image_size"), channels=int(channels) if channels else None,
                           skip_bad=kw.pop("skip_bad_images"))
    return ImageTask(request, augment=kw.pop("augment"), class_names=parse_class_names(kw.pop("class_names")))


def text_task(kw: dict):
    """The SentenceTask of the text data and task options (popped from `kw`)."""
    from cnnapp.data import parse_class_names
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks.sentences import SentenceTask
    request = TextRequest(data=tuple(kw.pop("data")), dataset=kw.pop("dataset"), dev=kw.pop("dev"),
                          test=kw.pop("test"), encoding=kw.pop("encoding"), text_column=kw.pop("text_column"),
                          label_column=kw.pop("label_column"), data_dir=kw.pop("data_dir"))
    return SentenceTask(request, standardize=kw.pop("standardize"), max_tokens=kw.pop("max_tokens"),
                        sequence_length=kw.pop("sequence_length"), embeddings=tuple(kw.pop("embeddings")),
                        class_names=parse_class_names(kw.pop("class_names")))


def report(outcome) -> None:
    """One result block: the accuracy, the run directory, the plots and the export."""
    if outcome.cv:
        s = outcome.cv
        click.echo(f"cross-validation ({s['protocol']}): accuracy mean {s['mean']:.4f} "
                   f"(min {s['min']:.4f}, max {s['max']:.4f} over {s['min_max_over']}); {s['run_dir']}/cv.json")
    if outcome.result is not None:
        m = outcome.result.metrics
        ev = m["evaluated_on"]
        click.echo(f"{ev} accuracy: {m[ev]['accuracy']:.4f} (macro F1 {m[ev]['macro_f1']:.4f}, "
                   f"{m[ev]['count']} examples; {m['evaluation_source']})")
    click.echo(f"run directory: {outcome.run_dir}")
    if outcome.plots:
        click.echo("plots: " + ", ".join(str(p) for p in outcome.plots))
    if outcome.cv:
        click.echo(f"exported model: {outcome.exported_from}")
    if outcome.export_dir:
        click.echo(f"exported: {outcome.export_dir}")
