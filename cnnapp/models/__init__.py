"""Model factories, registered by name: keyword-only, functional API, returned uncompiled.

Adding an architecture is one file here with a `@register("name")` factory; training, export,
inference and serving do not change.
"""

from __future__ import annotations

from typing import Callable

import keras

from cnnapp.errors import CnnappError

MODELS: dict[str, Callable[..., keras.Model]] = {}


def register(name: str):
    def wrap(fn):
        MODELS[name] = fn
        return fn
    return wrap


def get_model_factory(name: str):
    if name not in MODELS:
        raise CnnappError(f"--model: unknown model; choose from {', '.join(sorted(MODELS))}. Received: {name}")
    return MODELS[name]


def classifier_head(x, *, num_classes: int, dropout: float, max_norm: float | None = None):
    """The one head every model ends with: dropout -> dense -> softmax (float32 under mixed precision)."""
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm) if max_norm else None
    x = keras.layers.Dense(num_classes, kernel_constraint=constraint, name="logits")(x)
    # Softmax in float32 so mixed-precision training keeps stable probabilities.
    return keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)


from cnnapp.models import image_cnn, text_cnn  # noqa: E402,F401  (registers the factories)
