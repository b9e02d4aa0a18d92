"""Model factories, registered by name: keyword-only, functional API, returned uncompiled.

Adding an architecture is one file in this folder with a `@register(...)` factory (every module
here is imported by `registry()`); the CLI's `--model`, `cnnapp models`, `summary`, `inspect`
and the parametrised model tests find it there. Training, export, inference and serving do not
change.

A factory takes the data-given arguments of its kind by keyword, and owns the defaults of all the
rest (`None` means "derive it from the input shape"):
- image models: `input_shape` (H, W, C; float pixels 0..255) and `num_classes`;
- text models: `sequence_length`, `vocab_size`, `num_classes` and `embedding_matrix` (or None).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from dataclasses import dataclass
from typing import Any, Callable

import keras

from cnnapp.errors import CnnappError

KINDS = ("image", "text")
# What the task passes in; a user option may not set them.
DATA_ARGUMENTS = {
    "image": ("input_shape", "num_classes"),
    "text": ("sequence_length", "vocab_size", "num_classes", "embedding_matrix"),
}
DEFAULT_MODEL = {"image": "image_cnn", "text": "text_cnn"}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    kind: str
    factory: Callable[..., keras.Model]

    @property
    def description(self) -> str:
        """The first line of the factory's module docstring."""
        doc = inspect.getmodule(self.factory).__doc__ or self.factory.__doc__ or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def options(self) -> dict[str, Any]:
        """{keyword: default} of what a user may set (everything but the data-given arguments)."""
        params = inspect.signature(self.factory).parameters
        return {n: p.default for n, p in params.items()
                if p.kind is inspect.Parameter.KEYWORD_ONLY and n not in DATA_ARGUMENTS[self.kind] and n != "name"}

    def check_options(self, options: dict, arg_of=lambda key: f"--{key.replace('_', '-')}") -> None:
        unknown = sorted(set(options) - set(self.options()))
        if unknown:
            raise CnnappError(f"{arg_of(unknown[0])}: model {self.name} takes no {unknown[0]!r}; it takes "
                              f"{', '.join(sorted(self.options()))}. Received: {unknown[0]}={options[unknown[0]]!r}")

    def build(self, data_args: dict, options: dict | None = None) -> keras.Model:
        options = dict(options or {})
        self.check_options(options)
        return self.factory(**data_args, **options)


_MODELS: dict[str, ModelSpec] = {}


def register(name: str, *, kind: str):
    """Register a factory under `name` for `kind` ('image' or 'text')."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind}")

    def wrap(fn):
        _MODELS[name] = ModelSpec(name, kind, fn)
        return fn
    return wrap


def registry() -> dict[str, ModelSpec]:
    """Every registered model, after importing each module of this package once."""
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{__name__}.{info.name}")
    return dict(sorted(_MODELS.items()))


def get_model(name: str | None, *, kind: str, arg: str = "--model") -> ModelSpec:
    """The registered model `name` of `kind` (None: the kind's default), or a one-line error."""
    models = registry()
    name = name or DEFAULT_MODEL[kind]
    choices = [n for n, s in models.items() if s.kind == kind]
    if name not in models or models[name].kind != kind:
        raise CnnappError(f"{arg}: unknown {kind} model; choose from {', '.join(choices)}. Received: {name}")
    return models[name]


def classifier_head(x, *, num_classes: int, dropout: float, max_norm: float | None = None):
    """The one head every model ends with: dropout -> dense `logits` -> softmax (float32 under mixed precision)."""
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm) if max_norm else None
    x = keras.layers.Dense(num_classes, kernel_constraint=constraint, name="logits")(x)
    # Softmax in float32 so mixed-precision training keeps stable probabilities.
    return keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
