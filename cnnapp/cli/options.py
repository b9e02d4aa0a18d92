"""Shared click option sets and parameter types, and the configs they build.

Defaults have one source each: training options read `cnnapp.config` (TrainConfig and
TASK_DEFAULTS); model options default to None, meaning "the model factory's own default" (its
keyword defaults, shown by `cnnapp summary`); only what the user set reaches `ModelChoice`.
Nothing here imports TensorFlow, so `--help` is instant.
"""

from __future__ import annotations

import json
import math
import os

import click

from cnnapp.config import (CLASS_WEIGHTS, LR_SCHEDULES, MAX_DEFAULT_LENGTH, MAX_TOKENS_DEFAULT, OPTIMIZERS, STANDARDIZE,
                           STANDARDIZE_DEFAULT, TASK_DEFAULTS, ModelChoice, TrainConfig)

DEFAULTS = TrainConfig()


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


class OptionalIntList(IntList):
    """Like IntList, but `none`, `0` or an empty string mean no values: `--dense-units none`."""

    def convert(self, value, param, ctx):
        if not isinstance(value, tuple) and str(value).strip().lower() in ("", "0", "none"):
            return ()
        return super().convert(value, param, ctx)


class FiniteFloatRange(click.FloatRange):
    """click.FloatRange that refuses nan and inf, which pass its comparisons (nan < 0 is False) and
    make models that answer NaN."""

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number. Received: {value!r}", param, ctx)
        return number


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
        try:
            size = tuple(int(p) for p in str(value).lower().split("x"))
        except ValueError:
            self.fail(f"expected N or HxW. Received: {value!r}", param, ctx)
        size = size * 2 if len(size) == 1 else size
        if len(size) != 2 or min(size) < 1:
            self.fail(f"expected N or HxW with positive sides. Received: {value!r}", param, ctx)
        return size


class ByteSize(click.ParamType):
    """`500M`, `2G`, `1.5G` or a number of bytes."""

    name = "SIZE"
    UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}

    def convert(self, value, param, ctx):
        if isinstance(value, int) or value is None:
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        try:
            size = float(text[:-1]) * self.UNITS[text[-1]] if text and text[-1] in self.UNITS else float(text)
        except ValueError:
            size = float("nan")
        if not size >= 0 or size == float("inf"):
            self.fail(f"expected a size such as 500M or 2G. Received: {value!r}", param, ctx)
        return int(size)


class ModelArg(click.ParamType):
    """`KEY=VALUE` for a model factory keyword; VALUE is JSON (`0.3`, `true`, `[32, 64]`), a comma list
    of integers (`32,64`), or else a string."""

    name = "KEY=VALUE"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        key, sep, raw = str(value).partition("=")
        if not sep or not key.strip().isidentifier():
            self.fail(f"expected KEY=VALUE with a keyword name. Received: {value!r}", param, ctx)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parts = raw.split(",")
            parsed = tuple(int(p) for p in parts) if all(p.strip().isdigit() for p in parts) else raw
        return key.strip(), tuple(parsed) if isinstance(parsed, list) else parsed


class FractionList(click.ParamType):
    """Comma-separated numbers in (0, 1]: `0.9,0.93` -> (0.9, 0.93)."""

    name = "LEVELS"

    def convert(self, value, param, ctx):
        if isinstance(value, tuple):
            return value
        try:
            out = tuple(float(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"expected comma-separated fractions. Received: {value!r}", param, ctx)
        if any(not 0 < v <= 1 for v in out):
            self.fail(f"expected fractions in (0, 1]. Received: {value!r}", param, ctx)
        return out


INTS, NAMES, OPTIONAL_INTS, FRACTIONS = IntList(), NameList(), OptionalIntList(), FractionList()
FINITE = FiniteFloatRange()


def fraction(ctx, param, value):
    if value is not None and not 0.0 <= value < 1.0:
        raise click.BadParameter(f"must be in [0, 1). Received: {value}")
    return value


def non_negative(ctx, param, value):
    if value is not None and value < 0:
        raise click.BadParameter(f"must be 0 or more. Received: {value}")
    return value


def options(*decorators):
    def wrap(fn):
        for d in reversed(decorators):
            fn = d(fn)
        return fn
    return wrap


def _default(field: str) -> str:
    return f"[default: {getattr(DEFAULTS, field)}]"


def train_options(kind: str):
    """The options every train command shares (the task's defaults shown for `kind`)."""
    epochs = TASK_DEFAULTS[kind]["epochs"]
    batch = TASK_DEFAULTS[kind]["batch_size"]
    batch_help = (f"[default: {batch}]" if batch else
                  "[default: 128, halved for small data down to 16 so an epoch has ~20 steps]")
    return options(
        click.option("--model", "model_name", default=None, metavar="NAME",
                     help="A registered model (`cnnapp models` lists them). [default: the kind's default; image "
                          "folders: vgg]"),
        click.option("--model-arg", "model_args", type=ModelArg(), multiple=True,
                     help="KEY=VALUE for any keyword of the model's factory (repeatable), e.g. --model-arg width=48."),
        click.option("--name", default=None,
                     help="Model name, one folder name: runs/<name>/ and saved_models/<name>/ [default: from the data]."),
        click.option("--epochs", type=click.IntRange(min=1), default=None, help=f"[default: {epochs}]"),
        click.option("--batch-size", type=click.IntRange(min=1), default=None,
                     help="Per replica; the global batch is batch-size x replicas. Under several replicas, "
                          "scale --learning-rate linearly with the global batch (Goyal et al. 2017). " + batch_help),
        click.option("--learning-rate", type=FiniteFloatRange(min=0, min_open=True), default=None,
                     help="Default: the optimizer's (Adam 1e-3, Adadelta 1.0)."),
        click.option("--optimizer", type=click.Choice(OPTIMIZERS), default=DEFAULTS.optimizer, show_default=True),
        click.option("--lr-schedule", type=click.Choice(LR_SCHEDULES), default=None,
                     help="plateau: halve the rate when val_loss stalls for 2 epochs; cosine: decay it over "
                          "--epochs to 1%; onecycle: warm up to --learning-rate over the first 25% of the steps, "
                          f"then cosine down. [default: {TASK_DEFAULTS[kind]['lr_schedule']}]"),
        click.option("--label-smoothing", type=FiniteFloatRange(0, 1, max_open=True), default=None,
                     help=f"Target 1-s on the true class, s spread over all. [default: {TASK_DEFAULTS[kind]['label_smoothing']}]"),
        click.option("--class-weight", type=click.Choice(CLASS_WEIGHTS + ("none",)), default=None,
                     callback=lambda ctx, param, value: None if value == "none" else value,
                     help="balanced: weigh each class's examples by n / (classes x its count) in the loss, so a "
                          "class that is rarer in training than where the model is used is not under-predicted; "
                          "none: every example weighs 1. [default: none]"),
        click.option("--time-to", "accuracy_levels", type=FRACTIONS, default=",".join(map(str, DEFAULTS.accuracy_levels)),
                     show_default=True, help="Validation accuracies whose first wall time metrics.json records."),
        click.option("--ema", type=FiniteFloatRange(min=0, max=1, max_open=True), default=DEFAULTS.ema,
                     show_default=True, help="Momentum of an exponential moving average of the weights (e.g. "
                     "0.99); the average is what is validated, early-stopped on and exported. 0: off."),
        click.option("--ensemble", type=click.IntRange(min=1), default=DEFAULTS.ensemble, show_default=True,
                     help="Train N models (seeds seed, seed+1, ...) on the same data and export their average "
                          "probabilities as one model: more accurate, N times the training and prediction cost."),
        click.option("--cv", type=click.IntRange(min=2), default=None,
                     help="Stratified K-fold cross-validation instead of a test split (Kim: 10 for MR)."),
        click.option("--repeats", type=click.IntRange(min=1), default=DEFAULTS.repeats, show_default=True,
                     help="Under --cv: repeat with seeds seed, seed+1, ... and report mean (min, max)."),
        click.option("--export-fold", type=click.IntRange(min=1), default=None,
                     help="Under --cv: export this fold's model (first seed) instead of one trained on all the data."),
        click.option("--steps-per-execution", type=click.IntRange(min=1), default=DEFAULTS.steps_per_execution,
                     show_default=True, help="Training steps per call into the compiled graph (fewer Python round trips)."),
        click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=DEFAULTS.seed, show_default=True,
                     help="Seeds data splits, shuffling, init."),
        click.option("--deterministic/--no-deterministic", default=DEFAULTS.deterministic, show_default=True,
                     help="Deterministic TF ops: bit-identical reruns, slower."),
        click.option("--patience", type=click.IntRange(min=1), default=None,
                     help="Early stopping patience (epochs without a better val_accuracy; then see --restore-best). "
                          "[default: the whole run under onecycle, whose validation score climbs as the rate anneals; "
                          "else 6, which outlasts two halvings of the plateau schedule]"),
        click.option("--restore-best/--keep-last", "restore_best", default=None,
                     help="At the end of training, restore the epoch with the best val_accuracy, or keep the last "
                          "epoch's weights. Keep-last under a one-cycle rate followed to its end reads nothing of "
                          "validation, so it trains on all the training data and shows the test part as the "
                          "validation curve. [default: restore-best; keep-last "
                          "for image folders (a few dozen held-out photos cannot pick an epoch) under a one-cycle "
                          "rate that anneals to its end]"),
        click.option("--strategy", type=click.Choice(["auto", "default", "mirrored", "multi-worker"]),
                     default=DEFAULTS.strategy, show_default=True,
                     help="auto: multi-worker when TF_CONFIG names a cluster, mirrored over several GPUs, else default."),
        click.option("--precision", type=click.Choice(["auto", "float32", "mixed_float16", "mixed_bfloat16"]),
                     default=DEFAULTS.precision, show_default=True,
                     help="auto: mixed_float16 on tensor-core GPUs; on a CPU with native bfloat16 (AVX512-BF16, AMX) "
                          "mixed_bfloat16 for image models, else float32. Evaluation, best.keras and the export are "
                          "float32 whatever the training precision."),
        click.option("--jit", type=click.Choice(["auto", "on", "off"]), default=DEFAULTS.jit, show_default=True,
                     help="XLA compilation; auto: on with a GPU."),
        click.option("--run-dir", default=DEFAULTS.run_dir, show_default=True, type=click.Path(file_okay=False),
                     help="Runs go to RUN_DIR/<name>/ (config, history, metrics, plots, checkpoints)."),
        click.option("--export-base", default=DEFAULTS.export_base, show_default=True, type=click.Path(file_okay=False)),
        click.option("--export/--no-export", default=DEFAULTS.export, show_default=True),
        click.option("--litert", type=click.Choice(["float", "int8", "none"]), default=DEFAULTS.litert, show_default=True,
                     help="The LiteRT model written beside the SavedModel (assets.extra/litert/), which `predict` runs "
                          "without TensorFlow: float, int8 (dynamic-range weights, ~1/4 the size) or none."),
        click.option("--fresh", is_flag=True, default=DEFAULTS.fresh,
                     help="Discard the backup an interrupted run of this --name left and start over "
                          "(by default the same command resumes it; other settings are refused)."),
        click.option("--cache", default=DEFAULTS.cache, metavar="memory|disk|none|DIR",
                     help="Where decoded image files are kept between epochs. Default: in memory when they fit "
                          "1/32 of this machine's memory, else on disk in RUN_DIR/<name>/cache (reused by the next "
                          "run on the same files and decoding); DIR: on disk there; none: decoded every epoch."),
        click.option("--memory-budget", type=ByteSize(), default=DEFAULTS.memory_budget,
                     help="How much decoded or preprocessed data may be cached in memory (e.g. 500M, 2G). "
                          "Default: 1/32 of this machine's memory."),
    )


TRAIN_FIELDS = ("name", "epochs", "batch_size", "learning_rate", "optimizer", "lr_schedule", "label_smoothing",
                "class_weight",
                "accuracy_levels", "steps_per_execution", "ema", "ensemble",
                "cv", "repeats", "export_fold", "seed", "deterministic", "patience", "restore_best", "strategy", "precision",
                "jit", "run_dir", "export_base", "export", "litert", "fresh", "cache", "memory_budget")


def train_config(kw: dict, *, cluster: dict | None = None, dump_weights_dir: str | None = None) -> TrainConfig:
    return TrainConfig(**{f: kw.pop(f) for f in TRAIN_FIELDS}, cluster=cluster, dump_weights_dir=dump_weights_dir)


# Model options: None = not set = the factory's default. The names are the factories' keywords.
image_model_options = options(
    click.option("--filters", type=INTS, default=None,
                 help="Filters per conv block. [image_cnn default: blocks of 32, 64, then 128 until the map is "
                      "8x8, at least 3 from 24px up (28-64px: 32,64,128; 128px: 32,64,128,128; 8px: 32,64)]"),
    click.option("--kernel-sizes", type=INTS, default=None, help="One, or one per block."),
    click.option("--strides", type=INTS, default=None, help="One, or one per block."),
    click.option("--padding", type=click.Choice(["same", "valid"]), default=None),
    click.option("--pool-sizes", type=INTS, default=None, help="One, or one per block."),
    click.option("--batch-norm/--no-batch-norm", default=None),
    click.option("--conv-dropout", type=FINITE, default=None, callback=fraction),
    click.option("--dense-units", type=OPTIONAL_INTS, default=None,
                 help="Hidden dense widths after Flatten; 'none' for none (Flatten -> dropout -> softmax)."),
    click.option("--dropout", type=FINITE, default=None, callback=fraction),
)
IMAGE_MODEL_FIELDS = ("filters", "kernel_sizes", "strides", "padding", "pool_sizes", "batch_norm", "conv_dropout",
                      "dense_units", "dropout")

text_model_options = options(
    click.option("--region-sizes", type=INTS, default=None, help="Filter widths, one branch each. [text_cnn: 3,4,5]"),
    click.option("--feature-maps", type=click.IntRange(min=1), default=None, help="Filters per region size. [text_cnn: 100]"),
    click.option("--embedding-dim", type=click.IntRange(min=1), default=None,
                 help="For rand; pretrained vectors set their own size. [text_cnn: 128]"),
    click.option("--embedding-mode", type=click.Choice(["rand", "static", "non-static", "multichannel"]), default=None,
                 help="[text_cnn: rand]"),
    click.option("--dropout", type=FINITE, default=None, callback=fraction, help="[text_cnn: 0.5]"),
    click.option("--max-norm", type=FINITE, default=None, callback=non_negative,
                 help="Max-norm of the softmax weights; 0 turns the constraint off. [text_cnn: 3]"),
    click.option("--edge-padding/--no-edge-padding", default=None,
                 help="Kim's zero padding of (widest region - 1) vectors before and after each sentence. [text_cnn: on]"),
)
TEXT_MODEL_FIELDS = ("region_sizes", "feature_maps", "embedding_dim", "embedding_mode", "dropout", "max_norm",
                     "edge_padding")


def checked_model_choice(kw: dict, fields: tuple[str, ...], *, kind: str, data_args: dict | None = None,
                         training: bool = True) -> ModelChoice:
    """`model_choice`, checked before any data is read or TensorFlow imported: the model exists for
    `kind`, each option is a keyword of its factory with a value of the keyword's type, and the
    parameters the options imply can fit in memory (`data_args`: what is known of the data)."""
    from cnnapp.models import get_model
    from cnnapp.models.memory import check_parameter_memory
    by_model_arg = {key for key, _ in kw.get("model_args") or ()} - {f for f in fields if kw.get(f) is not None}
    choice = model_choice(kw, fields)

    def arg_of(key: str) -> str:
        return f"--model-arg {key}" if key in by_model_arg else f"--{key.replace('_', '-')}"

    spec = get_model(choice.name, kind=kind)
    options = spec.check_options(choice.options, arg_of=arg_of)
    check_parameter_memory(kind, {**spec.options(), **options}, data_args, training=training, arg_of=arg_of)
    return ModelChoice(name=choice.name, options=options)


def model_choice(kw: dict, fields: tuple[str, ...]) -> ModelChoice:
    """The model name and only the options the user set (explicit options win over --model-arg)."""
    options_set = dict(kw.pop("model_args", ()) or ())
    for f in fields:
        value = kw.pop(f, None)
        if value is not None:
            options_set[f] = value
    return ModelChoice(name=kw.pop("model_name", None), options=options_set)


text_task_options = options(
    click.option("--standardize", type=click.Choice(STANDARDIZE), default=STANDARDIZE_DEFAULT, show_default=True,
                 help="Text clean-up before splitting on whitespace."),
    click.option("--max-tokens", type=click.IntRange(min=2), default=MAX_TOKENS_DEFAULT, show_default=True,
                 help="Vocabulary cap."),
    click.option("--sequence-length", type=click.IntRange(min=1), default=None,
                 help=f"Default: the longest training sentence (at most {MAX_DEFAULT_LENGTH} tokens)."),
    click.option("--embeddings", type=click.Path(dir_okay=False), multiple=True,
                 help="word2vec .bin, word2vec text or GloVe text vectors (for static/non-static/multichannel); "
                      "repeat it to combine files (the first file that has a word wins)."),
)


# Where the data comes from: shared by train-image / train-text and sweep image / sweep text.
image_data_options = options(
    click.option("--data", type=click.Path(), default=None,
                 help="A folder of class subfolders (train/ + validation/ or test/ used when present; trained by "
                      "default with vgg at 64x64 for 40 epochs, keeping the last epoch), "
                      "or a folder of IDX files."),
    click.option("--dataset", default=None,
                 help="digits (embedded, the default), fashion_mnist (Debian's files when installed), or any TFDS name."),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory."),
    click.option("--skip-bad-images", is_flag=True, help="Skip (and count) unreadable image files instead of stopping."),
    click.option("--image-size", type=ImageSize(), default=None,
                 help="N or HxW. Default: the data's own size (image folders: 64)."),
    click.option("--channels", type=click.Choice(["1", "3"]), default=None,
                 help="Default: the data's own (folders: 3 unless all grayscale)."),
    click.option("--augment", type=NAMES, default=None,
                 help="Comma list of flip,crop,translate,rotate,zoom,contrast, or none. [default: the data's preset: "
                      "flip for Fashion-MNIST; flip,crop for photos and CIFAR; crop for other IDX data; none for digits]"),
    click.option("--tta", type=click.Choice(["flip", "none"]), default=None,
                 help="Test-time augmentation, in the evaluation and inside the export: average the model over the "
                      "image and its mirror. [default: flip where the augmentation flips]"),
)

text_data_options = options(
    click.option("--data", multiple=True, type=click.Path(),
                 help="Labelled lines `LABEL sentence`; a .csv/.tsv file; a .jsonl file of {\"text\", \"label\"}; a folder "
                      "of class subfolders of .txt (train/ and test/ used when present); or one file per class, one "
                      "sentence per line, given as several --data or a quoted glob ('rt-polarity.*': class = last "
                      "suffix when the files share a stem, else the stem). Default: the embedded demo corpus."),
    click.option("--dataset", default=None, help="A TFDS name instead of --data: imdb_reviews, glue/sst2."),
    click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="TFDS data directory."),
    click.option("--dev", type=click.Path(dir_okay=False), default=None, help="Dev file (else 10% of train)."),
    click.option("--test", type=click.Path(dir_okay=False), default=None,
                 help="Test file (else --cv, or a seeded 10% hold-out)."),
    click.option("--text-column", default=None, help="CSV/TSV/JSONL text column [default: text, else sentence]."),
    click.option("--label-column", default=None, help="CSV/TSV/JSONL label column [default: label]."),
    click.option("--encoding", default="utf-8", show_default=True, help="File encoding (MR needs latin-1)."),
)


class_names_option = click.option(
    "--class-names", default=None, metavar="NAMES|@FILE",
    help="Names for integer labels (TREC/SST .all files, digits), in label order: a comma list "
         "(DESC,ENTY,ABBR,HUM,LOC,NUM) or @FILE with one name per line. They reach metrics, plots and the export.")


def cluster_from_environment() -> dict | None:
    """TF_CONFIG, read here once (the edge) and passed on as a value."""
    from cnnapp.training.runtime import read_tf_config
    return read_tf_config(os.environ)
