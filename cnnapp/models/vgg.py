"""VGG-style CNN: blocks of two 3x3 conv + batch norm + ReLU, max pooling, global average pooling, softmax.

Simonyan & Zisserman's stacks of small convolutions, with batch norm after every convolution and a
global-average-pooling head instead of large dense layers (few parameters, so it trains in few
epochs). Each block doubles the filters (capped) and halves the map, until the map is at most 8x8;
the last block is pooled globally.

    >>> build_vgg(input_shape=(28, 28, 1), num_classes=10).count_params() < 300_000
    True
"""

from __future__ import annotations

import keras

from cnnapp.models import classifier_head, register


def default_vgg_filters(image_size, *, base: int = 32, cap: int = 256) -> tuple[int, ...]:
    """One block per halving until the map is at most 8x8, plus the globally pooled last block:
    28x28 -> (32, 64, 128), 8x8 -> (32, 64), 128x128 -> (32, 64, 128, 256, 256)."""
    side, halvings = min(image_size), 0
    while side > 8:
        side, halvings = side // 2, halvings + 1
    blocks = max(halvings, 1) + 1
    return tuple(min(base * 2 ** i, cap) for i in range(blocks))


@register("vgg", kind="image")
def build_vgg(
    *,
    input_shape: tuple[int, int, int],
    num_classes: int,
    filters: tuple[int, ...] | None = None,
    convs_per_block: int = 2,
    dropout: float = 0.3,
    name: str = "vgg",
) -> keras.Model:
    """Build the VGG-style classifier on float pixels 0..255 of shape `input_shape`.

    `filters=None` derives the blocks from the input size (`default_vgg_filters`).
    """
    filters = tuple(filters) if filters else default_vgg_filters(input_shape[:2])
    inputs = keras.Input(shape=tuple(input_shape), name="pixels")
    x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
    for i, f in enumerate(filters, start=1):
        for j in range(1, convs_per_block + 1):
            x = keras.layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"block{i}_conv{j}")(x)
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn{j}")(x)
            x = keras.layers.Activation("relu", name=f"block{i}_relu{j}")(x)
        if i < len(filters):
            x = keras.layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="global_pool")(x)
    outputs = classifier_head(x, num_classes=num_classes, dropout=dropout)
    return keras.Model(inputs, outputs, name=name)
