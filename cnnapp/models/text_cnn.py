"""The sentence CNN of Kim (2014) / Zhang & Wallace (2015): parallel 1-D convolutions, max over time.

token ids -> embedding (1 or 2 channels; padding ids give zero vectors) -> zero padding at both
edges -> one Conv1D per region size (ReLU) -> max over time -> concatenate -> dropout -> dense
softmax with a max-norm constraint.

Padding tokens (id 0, after the end of a short sentence) embed to zero vectors, as Kim's
``set_zero`` keeps them, so a sentence's features do not depend on how much padding follows it
and the padding has no learned vector of its own. Edge padding is Kim's: every sentence gets
(widest region - 1) zero vectors before and after it, so each filter also sees the first and last
words at every offset ("who ..." at the start of a TREC question is a feature of its own).
``edge_padding=False`` leaves it out.

Embedding modes (Kim's names): ``rand`` learns embeddings from scratch; ``static`` uses
pretrained vectors frozen; ``non-static`` fine-tunes them; ``multichannel`` has one frozen and
one fine-tuned channel, and every filter is applied to both and the results summed, as in Kim.
"""

from __future__ import annotations

import keras
import numpy as np

from cnnapp.errors import CnnappError
from cnnapp.models import classifier_head, register

EMBEDDING_MODES = ("rand", "static", "non-static", "multichannel")


@keras.saving.register_keras_serializable(package="cnnapp")
class ZeroPaddingTokens(keras.layers.Layer):
    """[token_ids, embedded] -> embedded with the vectors at padding ids (0) set to zero."""

    def call(self, inputs):
        token_ids, embedded = inputs
        keep = keras.ops.cast(keras.ops.not_equal(token_ids, 0), embedded.dtype)
        return embedded * keras.ops.expand_dims(keep, -1)

    def compute_output_shape(self, input_shape):
        return input_shape[1]


@register("text_cnn", kind="text")
def build_text_cnn(
    *,
    sequence_length: int,
    vocab_size: int,
    num_classes: int,
    region_sizes: tuple[int, ...] = (3, 4, 5),
    feature_maps: int = 100,
    embedding_dim: int = 128,
    embedding_mode: str = "rand",
    embedding_matrix: np.ndarray | None = None,
    dropout: float = 0.5,
    max_norm: float | None = 3.0,
    edge_padding: bool = True,
    name: str = "text_cnn",
) -> keras.Model:
    """Build the sentence classifier; its input is int token ids of shape [batch, sequence_length].

    >>> model = build_text_cnn(sequence_length=50, vocab_size=20000, num_classes=2)
    >>> [layer.name for layer in model.layers if layer.name.startswith("conv_w")]
    ['conv_w3', 'conv_w4', 'conv_w5']
    """
    if embedding_mode not in EMBEDDING_MODES:
        raise CnnappError(f"--embedding-mode: choose from {', '.join(EMBEDDING_MODES)}. "
                          f"Received: embedding_mode={embedding_mode}")
    if embedding_mode != "rand" and embedding_matrix is None:
        raise CnnappError(f"--embeddings: the {embedding_mode} mode needs pretrained vectors. "
                          f"Received: embedding_mode={embedding_mode} with no --embeddings file")
    if sequence_length < max(region_sizes):
        raise CnnappError(f"--sequence-length: must be at least the widest region size {max(region_sizes)}. "
                          f"Received: sequence_length={sequence_length}")
    if embedding_matrix is not None:
        embedding_dim = embedding_matrix.shape[1]

    def embedding(trainable: bool, layer_name: str):
        init = (keras.initializers.Constant(embedding_matrix) if embedding_matrix is not None
                else keras.initializers.RandomUniform(-0.25, 0.25))  # Kim's range for random vectors
        return keras.layers.Embedding(vocab_size, embedding_dim, embeddings_initializer=init,
                                      trainable=trainable, name=layer_name)

    token_ids = keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids")
    if embedding_mode == "multichannel":
        channels = [embedding(False, "embedding_static")(token_ids),
                    embedding(True, "embedding_non_static")(token_ids)]
    else:
        channels = [embedding(embedding_mode != "static", "embedding")(token_ids)]
    zero = ZeroPaddingTokens(name="zero_padding_tokens")
    channels = [zero([token_ids, c]) for c in channels]
    if edge_padding:
        pad = keras.layers.ZeroPadding1D(max(region_sizes) - 1, name="edge_padding")
        channels = [pad(c) for c in channels]

    pooled = []
    for width in region_sizes:
        conv = keras.layers.Conv1D(feature_maps, width, activation="relu", name=f"conv_w{width}")
        maps = [conv(c) for c in channels]
        x = maps[0] if len(maps) == 1 else keras.layers.Add(name=f"channels_w{width}")(maps)
        pooled.append(keras.layers.GlobalMaxPooling1D(name=f"maxpool_w{width}")(x))
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    outputs = classifier_head(x, num_classes=num_classes, dropout=dropout, max_norm=max_norm)
    return keras.Model(token_ids, outputs, name=name)
