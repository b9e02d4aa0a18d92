"""`cnnapp train-image` and `cnnapp train-text`: parse, build the task and configs, `run`, render."""

from __future__ import annotations

import dataclasses

import click

from cnnapp.cli import library_errors
from cnnapp.cli.options import (IMAGE_MODEL_FIELDS, NAMES, TEXT_MODEL_FIELDS, ImageSize, class_names_option,
                                cluster_from_environment, image_model_options, model_choice, text_model_options, text_task_options,
                                train_config, train_options)


def start(kind: str, kw: dict):
    """(train config, model choice, strategy): the strategy first, as tf.distribute requires; under
    `cnnapp launch` the worker made it already and passes it in the click context."""
    obj = click.get_current_context().obj or {}
    model = model_choice(kw, IMAGE_MODEL_FIELDS if kind == "image" else TEXT_MODEL_FIELDS)
    train = train_config(kw, cluster=obj["cluster"] if "cluster" in obj else cluster_from_environment(),
                         dump_weights_dir=obj.get("dump_weights_dir"))
    from cnnapp.training.runtime import make_strategy
    return train, model, obj.get("strategy") or make_strategy(train.strategy, train.cluster)


@click.command("train-image")
@click.option("--data", type=click.Path(), default=None,
              help="A folder of class subfolders (train/ + validation/ or test/ used when present; trained by "
                   "default with vgg at 64x64 for 40 epochs, keeping the last epoch), "
                   "or a folder of IDX files.")
@click.option("--dataset", default=None,
              help="digits (embedded, the default), fashion_mnist (Debian's files when installed), or any TFDS name.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory.")
@click.option("--skip-bad-images", is_flag=True, help="Skip (and count) unreadable image files instead of stopping.")
@click.option("--image-size", type=ImageSize(), default=None,
              help="N or HxW. Default: the data's own size (image folders: 64).")
@click.option("--channels", type=click.Choice(["1", "3"]), default=None,
              help="Default: the data's own (folders: 3 unless all grayscale).")
@click.option("--augment", type=NAMES, default=None,
              help="Comma list of flip,crop,translate,rotate,zoom,contrast, or none. [default: the data's preset: "
                   "flip for Fashion-MNIST; flip,crop for photos and CIFAR; crop for other IDX data; none for digits]")
@click.option("--tta", type=click.Choice(["flip", "none"]), default=None,
              help="Test-time augmentation, in the evaluation and inside the export: average the model over the "
                   "image and its mirror. [default: flip where the augmentation flips]")
@class_names_option
@image_model_options
@train_options("image")
@library_errors
def train_image(data, dataset, data_dir, skip_bad_images, image_size, channels, augment, tta, class_names, **kw):
    """Train an image CNN, evaluate it, and export a SavedModel."""
    train, model, strategy = start("image", kw)
    train = dataclasses.replace(train, tta=tta)
    from cnnapp.data import parse_class_names
    from cnnapp.data.image import ImageRequest
    from cnnapp.tasks.images import ImageTask
    from cnnapp.training.run import run
    request = ImageRequest(data=data, dataset=dataset, data_dir=data_dir, image_size=image_size,
                           channels=int(channels) if channels else None, skip_bad=skip_bad_images)
    report(run(ImageTask(request, augment=augment, class_names=parse_class_names(class_names)), train=train,
               model=model, strategy=strategy))


@click.command("train-text")
@click.option("--data", multiple=True, type=click.Path(),
              help="Labelled lines `LABEL sentence`; a .csv/.tsv file; a .jsonl file of {\"text\", \"label\"}; a folder "
                   "of class subfolders of .txt (train/ and test/ used when present); or one file per class, one "
                   "sentence per line, given as several --data or a quoted glob ('rt-polarity.*': class = last "
                   "suffix when the files share a stem, else the stem). Default: the embedded demo corpus.")
@click.option("--dataset", default=None, help="A TFDS name instead of --data: imdb_reviews, glue/sst2.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory.")
@click.option("--dev", type=click.Path(dir_okay=False), default=None, help="Dev file (else 10% of train).")
@click.option("--test", type=click.Path(dir_okay=False), default=None,
              help="Test file (else --cv, or a seeded 10% hold-out).")
@click.option("--text-column", default=None, help="CSV/TSV/JSONL text column [default: text, else sentence].")
@click.option("--label-column", default=None, help="CSV/TSV/JSONL label column [default: label].")
@click.option("--encoding", default="utf-8", show_default=True, help="File encoding (MR needs latin-1).")
@class_names_option
@text_task_options
@text_model_options
@train_options("text")
@library_errors
def train_text(data, dataset, data_dir, dev, test, text_column, label_column, encoding, class_names, standardize,
               max_tokens, sequence_length, embeddings, **kw):
    """Train the Kim / Zhang & Wallace sentence CNN, evaluate it, and export a SavedModel."""
    train, model, strategy = start("text", kw)
    from cnnapp.data import parse_class_names
    from cnnapp.data.text import TextRequest
    from cnnapp.tasks.sentences import SentenceTask
    from cnnapp.training.run import run
    request = TextRequest(data=tuple(data), dataset=dataset, dev=dev, test=test, encoding=encoding,
                          text_column=text_column, label_column=label_column, data_dir=data_dir)
    task = SentenceTask(request, standardize=standardize, max_tokens=max_tokens, sequence_length=sequence_length,
                        embeddings=tuple(embeddings), class_names=parse_class_names(class_names))
    report(run(task, train=train, model=model, strategy=strategy))


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
