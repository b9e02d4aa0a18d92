"""The cnnapp command line: thin click commands that build a config and call one library function.

TensorFlow is imported inside the commands, never at module import, so `cnnapp --help` is instant.
Library errors (`CnnappError`) become one-line `Error: ...` messages with exit code 1.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
import os
import sys
from pathlib import Path

import click

from cnnapp import __version__


# ---------------------------------------------------------------------------- option types

class IntList(click.ParamType):
    """Comma-separated positive integers: `32,64` -> (32, 64)."""

    name = "INTS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            out = tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"expected comma-separated integers. Received: {value!r}", param, ctx)
        if not out or any(v < 1 for v in out):
            self.fail(f"expected positive integers. Received: {value!r}", param, ctx)
        return out


class NameList(click.ParamType):
    name = "NAMES"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        return tuple(v.strip() for v in str(value).split(",") if v.strip())


class ImageSize(click.ParamType):
    """`28` or `32x48` (height x width)."""

    name = "HxW"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple) or value is None:
            return value
        parts = str(value).lower().split("x")
        try:
            size = tuple(int(p) for p in parts)
        except ValueError:
            self.fail(f"expected N or HxW. Received: {value!r}", param, ctx)
        if len(size) == 1:
            size = size * 2
        if len(size) != 2 or min(size) < 1:
            self.fail(f"expected N or HxW with positive sides. Received: {value!r}", param, ctx)
        return size


class OptionalIntList(IntList):
    """Like IntList, but `none`, `0` or an empty string mean no values: `--dense-units none`."""

    def convert(self, value, param, ctx):
        if not isinstance(value, tuple) and str(value).strip().lower() in ("", "0", "none"):
            return ()
        return super().convert(value, param, ctx)


INTS, NAMES, OPTIONAL_INTS = IntList(), NameList(), OptionalIntList()


def fraction(ctx, param, value):
    if value is not None and not 0.0 <= value < 1.0:
        raise click.BadParameter(f"must be in [0, 1). Received: {value}")
    return value


# ---------------------------------------------------------------------------- shared option sets

def options(*decorators):
    def wrap(fn):
        for d in reversed(decorators):
            fn = d(fn)
        return fn
    return wrap


train_options = options(
    click.option("--name", default=None, help="Model name: runs/<name>/ and saved_models/<name>/ (default: from the data)."),
    click.option("--epochs", type=click.IntRange(min=1), default=None,
                 help="[default: 20 for images, 15 for sentences]"),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help="Per replica; the global batch is batch-size x replicas. Under several replicas, "
                      "scale --learning-rate linearly with the global batch (Goyal et al. 2017). "
                      "[default: 50 sentences; 128 images, halved for small data down to 16 so an "
                      "epoch has ~20 steps]"),
    click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None,
                 help="Default: the optimizer's (Adam 1e-3, Adadelta 1.0)."),
    click.option("--optimizer", type=click.Choice(["adam", "adamw", "adadelta", "sgd", "rmsprop"]), default=None,
                 help="[default: adam]"),
    click.option("--lr-schedule", type=click.Choice(["plateau", "cosine"]), default="plateau", show_default=True,
                 help="plateau: halve the rate when val_loss stalls for 2 epochs; cosine: decay it over "
                      "--epochs to 1%."),
    click.option("--ema", type=click.FloatRange(min=0, max=1, max_open=True), default=0.0, show_default=True,
                 help="Momentum of an exponential moving average of the weights (e.g. 0.99); the average "
                      "is what is validated, early-stopped on and exported. 0: off."),
    click.option("--ensemble", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Train N models (seeds seed, seed+1, ...) on the same data and export their average "
                      "probabilities as one model: more accurate, N times the training and prediction cost."),
    click.option("--seed", type=int, default=1337, show_default=True, help="Seeds data splits, shuffling, init."),
    click.option("--deterministic/--no-deterministic", default=False, show_default=True,
                 help="Deterministic TF ops: bit-identical reruns, slower."),
    click.option("--patience", type=click.IntRange(min=1), default=6, show_default=True,
                 help="Early stopping patience (epochs without a better val_accuracy); the default "
                      "outlasts two halvings of the plateau schedule (2 epochs each) and their effect."),
    click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multi-worker"]), default="auto",
                 show_default=True, help="auto: multi-worker when TF_CONFIG names a cluster, mirrored over "
                                         "several GPUs, else default."),
    click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16", "mixed_bfloat16"]),
                 default="auto", show_default=True, help="auto: mixed_float16 on tensor-core GPUs, float32 on CPU."),
    click.option("--jit", type=click.Choice(["auto", "on", "off"]), default="auto", show_default=True,
                 help="XLA compilation; auto: on with a GPU."),
    click.option("--run-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
                 help="Runs go to RUN_DIR/<name>/ (config, history, metrics, plots, checkpoints)."),
    click.option("--export-base", default="saved_models", show_default=True, type=click.Path(file_okay=False)),
    click.option("--export/--no-export", default=True, show_default=True),
)


def train_config(kw: dict, *, epochs: int, batch_size: int | None, optimizer: str):
    from cnnapp.config import TrainConfig
    return TrainConfig(
        name=kw["name"], epochs=kw["epochs"] or epochs, batch_size=kw["batch_size"] or batch_size,
        learning_rate=kw["learning_rate"], optimizer=kw["optimizer"] or optimizer, seed=kw["seed"],
        lr_schedule=kw["lr_schedule"], ema=kw["ema"], ensemble=kw["ensemble"],
        deterministic=kw["deterministic"], patience=kw["patience"], strategy=kw["strategy"],
        precision=kw["precision"], jit=kw["jit"], run_dir=kw["run_dir"], export_base=kw["export_base"],
        export=kw["export"])


image_model_options = options(
    click.option("--image-size", type=ImageSize(), default=None,
                 help="N or HxW. Default: the data's own size (image folders: 128)."),
    click.option("--channels", type=click.Choice(["1", "3"]), default=None,
                 help="Default: the data's own (folders: 3 unless all grayscale)."),
    click.option("--filters", type=INTS, default=None,
                 help="Filters per conv block. Default: blocks of 32, 64, then 128 until the map is 8x8, "
                      "at least 3 from 24px up (28-64px: 32,64,128; 128px: 32,64,128,128; 8px: 32,64)."),
    click.option("--kernel-sizes", type=INTS, default="3", show_default=True, help="One, or one per block."),
    click.option("--strides", type=INTS, default="1", show_default=True, help="One, or one per block."),
    click.option("--padding", type=click.Choice(["same", "valid"]), default="same", show_default=True),
    click.option("--pool-sizes", type=INTS, default="2", show_default=True, help="One, or one per block."),
    click.option("--batch-norm/--no-batch-norm", default=True, show_default=True),
    click.option("--conv-dropout", type=float, default=0.0, show_default=True, callback=fraction),
    click.option("--dense-units", type=OPTIONAL_INTS, default="128", show_default=True,
                 help="Hidden dense widths after Flatten; 'none' for none (Flatten -> dropout -> softmax)."),
    click.option("--dropout", type=float, default=0.5, show_default=True, callback=fraction),
    click.option("--augment", type=NAMES, default="", help="Comma list of flip,translate,rotate,zoom,contrast."),
)


def image_model_config(kw: dict):
    from cnnapp.config import ImageModelConfig
    return ImageModelConfig(
        image_size=kw["image_size"], channels=int(kw["channels"]) if kw["channels"] else None,
        filters=kw["filters"] or (), kernel_sizes=kw["kernel_sizes"], strides=kw["strides"],
        padding=kw["padding"], pool_sizes=kw["pool_sizes"], batch_norm=kw["batch_norm"],
        conv_dropout=kw["conv_dropout"], dense_units=kw["dense_units"], dropout=kw["dropout"],
        augment=kw["augment"])


text_model_options = options(
    click.option("--region-sizes", type=INTS, default="3,4,5", show_default=True, help="Filter widths, one branch each."),
    click.option("--feature-maps", type=click.IntRange(min=1), default=100, show_default=True, help="Filters per region size."),
    click.option("--embedding-dim", type=click.IntRange(min=1), default=128, show_default=True,
                 help="For rand; pretrained vectors set their own size."),
    click.option("--embedding-mode", type=click.Choice(["rand", "static", "non-static", "multichannel"]),
                 default="rand", show_default=True),
    click.option("--embeddings", "embeddings_path", type=click.Path(dir_okay=False), multiple=True,
                 help="word2vec .bin, word2vec text or GloVe text vectors (for static/non-static/multichannel); "
                      "repeat it to combine files (the first file that has a word wins)."),
    click.option("--dropout", type=float, default=0.5, show_default=True, callback=fraction),
    click.option("--max-norm", type=float, default=3.0, show_default=True, help="0 turns the constraint off."),
    click.option("--edge-padding/--no-edge-padding", default=True, show_default=True,
                 help="Kim's zero padding of (widest region - 1) vectors before and after each sentence."),
    click.option("--max-tokens", type=click.IntRange(min=2), default=30000, show_default=True, help="Vocabulary cap."),
    click.option("--sequence-length", type=click.IntRange(min=1), default=None,
                 help="Default: the longest training sentence (at most 400 tokens)."),
)


def text_model_config(kw: dict):
    from cnnapp.config import TextModelConfig
    return TextModelConfig(
        region_sizes=kw["region_sizes"], feature_maps=kw["feature_maps"], embedding_dim=kw["embedding_dim"],
        embedding_mode=kw["embedding_mode"], embeddings_path=tuple(kw["embeddings_path"]) or None,
        dropout=kw["dropout"],
        max_norm=kw["max_norm"] or None, edge_padding=kw["edge_padding"], max_tokens=kw["max_tokens"], sequence_length=kw["sequence_length"])


# ---------------------------------------------------------------------------- plumbing

def quiet_tensorflow() -> None:
    """Before TensorFlow is imported: keep its C++ info logs out of the user's terminal."""
    # Level 3 also hides libjpeg's C++ error lines: cnnapp reports bad files itself, by name.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


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
    quiet_tensorflow()


def main():
    cli(prog_name="cnnapp")


# ---------------------------------------------------------------------------- commands

@cli.command("train-image")
@click.option("--data", type=click.Path(), default=None,
              help="A folder of class subfolders (train/ + validation/ or test/ used when present), "
                   "or a folder of IDX files.")
@click.option("--dataset", default=None,
              help="digits (embedded, the default), fashion_mnist (Debian's files when installed), or any TFDS name.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory.")
@click.option("--skip-bad-images", is_flag=True, help="Skip (and count) unreadable image files instead of stopping.")
@image_model_options
@train_options
@library_errors
def train_image(data, dataset, data_dir, skip_bad_images, **kw):
    """Train the 2-D CNN on images, evaluate it, and export a SavedModel."""
    from cnnapp.pipelines.image import train_image as run
    result, export_dir = run(data=data, dataset=dataset, data_dir=data_dir, skip_bad_images=skip_bad_images,
                             model_cfg=image_model_config(kw),
                             train_cfg=train_config(kw, epochs=20, batch_size=None, optimizer="adam"))
    report_result(result, export_dir)


@cli.command("train-text")
@click.option("--data", multiple=True, type=click.Path(),
              help="Labelled lines `LABEL sentence`; a .csv/.tsv file; a folder of class subfolders of .txt "
                   "(train/ and test/ used when present); or one file per class, one sentence per line, given "
                   "as several --data or a quoted glob ('rt-polarity.*': class = last suffix when the files "
                   "share a stem, else the stem). Default: the embedded demo corpus.")
@click.option("--dataset", default=None, help="A TFDS name instead of --data: imdb_reviews, glue/sst2.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory.")
@click.option("--dev", type=click.Path(dir_okay=False), default=None, help="Dev file (else 10% of train).")
@click.option("--test", type=click.Path(dir_okay=False), default=None,
              help="Test file (else --cv, or a seeded 10% hold-out).")
@click.option("--text-column", default=None, help="CSV/TSV text column [default: text, else sentence].")
@click.option("--label-column", default=None, help="CSV/TSV label column [default: label].")
@click.option("--encoding", default="utf-8", show_default=True, help="File encoding (MR needs latin-1).")
@click.option("--standardize", type=click.Choice(["kim", "kim_sst", "lower", "lower_and_strip_punctuation", "none"]),
              default="kim", show_default=True, help="Text clean-up before splitting on whitespace.")
@click.option("--cv", type=click.IntRange(min=2), default=None,
              help="Stratified K-fold cross-validation instead of a test split (Kim: 10 for MR).")
@click.option("--repeats", type=click.IntRange(min=1), default=1, show_default=True,
              help="Under --cv: repeat with seeds seed, seed+1, ... and report mean (min, max).")
@click.option("--export-fold", type=click.IntRange(min=1), default=None,
              help="Under --cv: export this fold's model (first seed) instead of one trained on all the data.")
@text_model_options
@train_options
@library_errors
def train_text(data, dataset, data_dir, dev, test, text_column, label_column, encoding, standardize,
               cv, repeats, export_fold, **kw):
    """Train the Kim / Zhang & Wallace sentence CNN, evaluate it, and export a SavedModel."""
    from cnnapp.data.text import TextRequest
    from cnnapp.pipelines.text import train_text as run
    request = TextRequest(data=tuple(data), dataset=dataset, dev=dev, test=test, encoding=encoding,
                          text_column=text_column, label_column=label_column, data_dir=data_dir)
    outcome = run(request=request, standardize=standardize, cv=cv, repeats=repeats, export_fold=export_fold,
                  model_cfg=text_model_config(kw), train_cfg=train_config(kw, epochs=15, batch_size=50, optimizer="adam"))
    if outcome.cv:
        s = outcome.cv
        click.echo(f"cross-validation ({s['protocol']}): accuracy mean {s['mean']:.4f} "
                   f"(min {s['min']:.4f}, max {s['max']:.4f} over {s['min_max_over']}); "
                   f"{s['run_dir']}/cv.json")
        click.echo(f"exported model: {outcome.exported_from}")
    if outcome.result is not None:
        report_result(outcome.result, outcome.export_dir)


def report_result(result, export_dir) -> None:
    m = result.metrics
    ev = m["evaluated_on"]
    click.echo(f"{ev} accuracy: {m[ev]['accuracy']:.4f} (macro F1 {m[ev]['macro_f1']:.4f}, "
               f"{m[ev]['count']} examples; {m['evaluation_source']})")
    click.echo(f"run directory: {result.run_dir}")
    if export_dir:
        click.echo(f"exported: {export_dir}")


def expand_image_paths(items) -> list[Path]:
    paths = []
    for item in items:
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            paths.append(Path(item))  # reported as unreadable below
        for m in matches:
            p = Path(m)
            paths += sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    return paths


@cli.command()
@click.argument("model", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option("--file", "input_file", type=click.File("r", encoding="utf-8"), default=None,
              help="Text models: one sentence per line ('-' for standard input).")
@click.option("--top-k", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON document on standard output.")
@library_errors
def predict(model, inputs, input_file, top_k, as_json):
    """Answer from an exported model: image files/folders/globs, or sentences.

    MODEL is a version folder or saved_models/<name> (its latest version). Sentences come from
    the arguments, --file, or standard input when neither is given.
    """
    from cnnapp.inference import Predictor
    predictor = Predictor(model)
    if predictor.kind == "image":
        paths = expand_image_paths(inputs)
        if not paths:
            raise click.UsageError("give image files, folders or globs to predict.")
        values, labels, errors = [], [], []
        for p in paths:
            try:
                values.append(p.read_bytes())
                labels.append(str(p))
            except OSError as e:
                errors.append({"input": str(p), "error": f"cannot read file ({e.strerror})"})
        predictions = predictor.predict(values, labels) if values else []
    else:
        sentences = list(inputs)
        if input_file is not None:
            sentences += [line.rstrip("\n") for line in input_file]
        if not sentences and input_file is None:
            if sys.stdin.isatty():
                raise click.UsageError("give sentences as arguments, with --file, or on standard input.")
            sentences = [line.rstrip("\n") for line in sys.stdin]
        predictions, errors = predictor.predict(sentences, sentences), []

    rows = errors + [
        {"input": p.input, "error": p.error} if p.error else
        {"input": p.input, "top": [{"class": c, "probability": round(s, 6)} for c, s in p.top(top_k)]}
        for p in predictions]
    if as_json:
        click.echo(json.dumps({"model": str(predictor.model_dir), "kind": predictor.kind, "predictions": rows},
                              indent=2))
    else:
        for row in rows:
            if "error" in row:
                click.echo(f"{row['input']}: error: {row['error']}", err=True)
            else:
                click.echo(f"{row['input']}: " + ", ".join(f"{t['class']} {t['probability']:.3f}" for t in row["top"]))
    if any("error" in row for row in rows):
        sys.exit(1)


@cli.command()
@click.argument("run_dir", type=click.Path())
@click.argument("inputs", nargs=-1)
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Where image plots go [default: RUN_DIR/inspect].")
@click.option("--top", type=click.IntRange(min=1), default=5, show_default=True, help="N-grams to show per sentence.")
@click.option("--json", "as_json", is_flag=True)
@library_errors
def inspect(run_dir, inputs, out, top, as_json):
    """See what a trained model learned (RUN_DIR is runs/<name>).

    Images: writes the first layer's filters and each conv block's feature maps for every input
    image as PNGs. Sentences: prints the n-grams whose filters won max-over-time pooling and
    pushed the predicted class most.
    """
    from cnnapp.inspection import inspect_image, inspect_sentences, kind_of, load_run
    model, config = load_run(run_dir)
    if not inputs:
        raise click.UsageError("give image files or sentences to inspect.")
    if kind_of(model) == "image":
        out_dir = Path(out or Path(run_dir) / "inspect")
        class_names = config.get("resolved", {}).get("class_names")
        results = {}
        for path in expand_image_paths(inputs):
            try:
                data = path.read_bytes()
            except OSError as e:
                raise click.ClickException(f"INPUTS: cannot read file ({e.strerror}). Received: {path}")
            res = inspect_image(model, data, out_dir, stem=path.stem)
            best = int(max(range(len(res["probabilities"])), key=res["probabilities"].__getitem__))
            res["predicted"] = class_names[best] if class_names else str(best)
            results[str(path)] = res
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        for path, res in results.items():
            click.echo(f"{path}: predicted {res['predicted']}")
            for name, layer in res["layers"].items():
                click.echo(f"  {name:8s} {'x'.join(map(str, layer['shape'])):>10s}  "
                           f"{layer['active_fraction']:.0%} active  -> {layer['plot']}")
        click.echo(f"filters: {out_dir / 'filters.png'}")
    else:
        results = inspect_sentences(model, config, Path(run_dir), list(inputs), top=top)
        if as_json:
            click.echo(json.dumps(results, indent=2))
            return
        for res in results:
            p = max(res["probabilities"])
            click.echo(f"{res['sentence']!r}: {res['predicted']} {p:.3f}")
            for g in res["ngrams"]:
                click.echo(f"  {g['contribution']:+8.3f}  {g['ngram']!r} (width {g['width']}, {g['filters']} filter(s))")


@cli.group()
def summary():
    """Print a model's layers, output shapes, activations, parameters and cost, without training."""


@summary.command("image")
@click.option("--num-classes", type=click.IntRange(min=2), default=10, show_default=True)
@image_model_options
@library_errors
def summary_image(num_classes, **kw):
    """The image CNN for the given architecture options (default input 28x28x1)."""
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.models.summary import format_summary
    from cnnapp.pipelines.image import image_model_kwargs, resolve_image_model
    cfg = image_model_config(kw)
    cfg = resolve_image_model(cfg, cfg.image_size or (28, 28), cfg.channels or 1)
    model = build_image_cnn(input_shape=(*cfg.image_size, cfg.channels), num_classes=num_classes,
                            **image_model_kwargs(cfg))
    click.echo(format_summary(model))


@summary.command("text")
@click.option("--num-classes", type=click.IntRange(min=2), default=2, show_default=True)
@click.option("--vocab-size", type=click.IntRange(min=2), default=20000, show_default=True)
@text_model_options
@library_errors
def summary_text(num_classes, vocab_size, **kw):
    """The sentence CNN for the given architecture options (default sequence length 50)."""
    import numpy as np
    from cnnapp.models.summary import format_summary
    from cnnapp.models.text_cnn import build_text_cnn
    from cnnapp.pipelines.text import text_model_kwargs
    cfg = text_model_config(kw)
    kwargs = text_model_kwargs(cfg)
    if cfg.embedding_mode != "rand":  # shapes only: stand-in vectors of the chosen size
        kwargs["embedding_matrix"] = np.zeros((vocab_size, cfg.embedding_dim), "float32")
    model = build_text_cnn(sequence_length=cfg.sequence_length or 50, vocab_size=vocab_size,
                           num_classes=num_classes, **kwargs)
    click.echo(format_summary(model))

from cnnapp.serving.command import serve  # noqa: E402
cli.add_command(serve)

from cnnapp.launch import launch  # noqa: E402
cli.add_command(launch)
