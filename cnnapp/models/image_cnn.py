"""The plain CNN (LeNet / keras-io style): conv blocks, then Flatten -> Dense -> softmax.

[Conv2D -> (BatchNorm) -> ReLU -> MaxPool -> (Dropout)] x N -> Flatten -> Dense -> dropout -> softmax.

The defaults (32, 64 and 128 filters of 3x3, same padding, batch norm, Dense 128, dropout 0.5,
20 epochs) are chosen for 28x28 grayscale data (see docs/bench/image.md for Fashion-MNIST); larger
RGB photos get a fourth block, the 8x8 digits two (see `default_filters`).
"""

from __future__ import annotations

import keras

from cnnapp.errors import CnnappError
from cnnapp.models import classifier_head, register


def default_filters(image_size) -> tuple[int, ...]:
    """Conv blocks (each halving the map) until it is at most 8x8; at least three from 24x24 up, two
    below; 32, 64, then 128 filters.

    28x28 and 32x32 get (32, 64, 128); 64x64 (32, 64, 128); 128x128 (32, 64, 128, 128); the
    embedded 8x8 digits (32, 64). With the third block at 28x28 the default passes 92.5% on
    Fashion-MNIST (two blocks were not shown to); stopping at 8x8 keeps Flatten -> Dense small: with
    three blocks, a 128x128 photo flattened to 32,768 values and 98% of the parameters sat in one
    Dense layer, which did not learn cats vs dogs at all (docs/bench/image.md).
    """
    side, blocks = min(image_size), 0
    least = 3 if side >= 24 else 2
    while side > 8 or blocks < least:
        side, blocks = side // 2, blocks + 1
    return tuple(min(32 * 2 ** i, 128) for i in range(blocks))


def _per_block(values, n: int, arg: str) -> list:
    values = list(values)
    if len(values) == 1:
        return values * n
    if len(values) != n:
        raise CnnappError(f"--{arg}: give one value or one per conv block ({n}). Received: {values}")
    return values


def conv_output_side(side: int, kernel: int, stride: int, pool: int, padding: str) -> int:
    side = -(-side // stride) if padding == "same" else (side - kernel) // stride + 1
    return side // pool


@register("image_cnn", kind="image")
def build_image_cnn(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: tuple[int, ...] | None = None,
    kernel_sizes: tuple[int, ...] = (3,),
    strides: tuple[int, ...] = (1,),
    padding: str = "same",
    pool_sizes: tuple[int, ...] = (2,),
    batch_norm: bool = True,
    conv_dropout: float = 0.0,
    dense_units: tuple[int, ...] = (128,),
    dropout: float = 0.5,
    name: str = "image_cnn",
) -> keras.Model:
    """Build the image classifier; its input is float pixels in 0..255 of shape `input_shape`.

    `filters=None` derives the blocks from the input size (`default_filters`).

    >>> model = build_image_cnn(input_shape=(28, 28, 1), num_classes=10)
    >>> model.output_shape
    (None, 10)
    """
    filters = tuple(filters) if filters else default_filters(input_shape[:2])
    if padding not in ("same", "valid"):
        raise CnnappError(f"--padding: choose same or valid. Received: padding={padding}")
    n = len(filters)
    kernels = _per_block(kernel_sizes, n, "kernel-sizes")
    strides = _per_block(strides, n, "strides")
    pools = _per_block(pool_sizes, n, "pool-sizes")
    h, w = input_shape[0], input_shape[1]
    for i, (k, s, p) in enumerate(zip(kernels, strides, pools), start=1):
        h, w = conv_output_side(h, k, s, p, padding), conv_output_side(w, k, s, p, padding)
        if h < 1 or w < 1:
            raise CnnappError(
                f"--filters: a {input_shape[0]}x{input_shape[1]} input shrinks to nothing at conv block {i} "
                f"(kernel {k}, stride {s}, pool {p}, padding {padding}); use fewer blocks, smaller pools, "
                f"padding same or a larger --image-size. Received: filters={','.join(map(str, filters))}")

    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, (f, k, s, p) in enumerate(zip(filters, kernels, strides, pools), start=1):
        x = keras.layers.Conv2D(f, k, strides=s, padding=padding, use_bias=not batch_norm,
                                name=f"conv{i}")(x)
        if batch_norm:
            # momentum 0.9, not Keras's 0.99: the moving statistics must settle within the few
            # hundred steps a small data set gives, or validation in inference mode is noise.
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"bn{i}")(x)
        x = keras.layers.Activation("relu", name=f"relu{i}")(x)
        if p > 1:
            x = keras.layers.MaxPooling2D(p, name=f"pool{i}")(x)
        if conv_dropout:
            x = keras.layers.Dropout(conv_dropout, name=f"conv_dropout{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for j, units in enumerate(dense_units, start=1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{j}")(x)
    outputs = classifier_head(x, num_classes=num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)
