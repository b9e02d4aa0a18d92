"""NBSVM + CNN-rand in one model: the NB-weighted bigram model and Kim's CNN on the same n-gram ids, averaged.

The vectorizer's n-gram ids (words first, then bigrams, ...) feed both: the NB part reads every n-gram
(`cnnapp.models.nbsvm`), the CNN reads only the words (`UnigramIds`), and the prediction is the average of
their probability vectors, trained in one fit and exported as one model. `explain` names the n-grams of
the NB part.
"""

from __future__ import annotations

import keras
import numpy as np

from cnnapp.models import register
from cnnapp.models.nbsvm import FirstOccurrence, NBContribution, SumLogits

@keras.saving.register_keras_serializable(package="cnnapp")
class UnigramIds(keras.layers.Layer):
    """n-gram ids [N, L] of widths 1..`ngrams` -> the ids of the sentence's words (its unigram positions, which
    come first), 0 at every other position: what a CNN over the words reads from the same vectorizer; ids from
    `max_words` up become 1 (unknown).

    A sentence of n words has k n - k (k - 1) / 2 n-grams of widths 1..k, so n follows from the count."""

    def __init__(self, ngrams: int = 2, max_words: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.ngrams, self.max_words = int(ngrams), max_words

    def call(self, ngram_ids):
        k = self.ngrams
        count = keras.ops.sum(keras.ops.cast(keras.ops.not_equal(ngram_ids, 0), "int32"), axis=1, keepdims=True)
        words = (count + k * (k - 1) // 2) // k
        position = keras.ops.expand_dims(keras.ops.arange(keras.ops.shape(ngram_ids)[1], dtype="int32"), 0)
        ids = keras.ops.where(position < words, ngram_ids, keras.ops.zeros_like(ngram_ids))
        if self.max_words:   # ids past the embedding's rows read as the unknown word (1)
            ids = keras.ops.where(ids >= self.max_words, keras.ops.ones_like(ids), ids)
        return ids

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "ngrams": self.ngrams, "max_words": self.max_words}


@register("nbsvm_cnn", kind="text")
def build_nbsvm_cnn(
    *,
    sequence_length: int,
    vocab_size: int,
    num_classes: int,
    embedding_matrix: np.ndarray | None = None,
    ngrams: int = 2,
    max_ngrams: int | None = None,
    nb_alpha: float = 1.0,
    l2: float = 1e-6,
    region_sizes: tuple[int, ...] = (3, 4, 5),
    feature_maps: int = 100,
    embedding_dim: int = 128,
    max_words: int = 30000,
    dropout: float = 0.5,
    max_norm: float | None = 3.0,
    name: str = "nbsvm_cnn",
) -> keras.Model:
    """The NB-weighted n-gram model and Kim's CNN-rand on the words of the same n-gram ids, trained together in
    one fit; the prediction is the average of their two probability vectors (an ensemble of two families in one
    exported model). `explain` names the n-grams of the NB part. The vectorizer puts words before longer n-grams
    (`unigrams_first`), so the CNN embeds ids below `max_words` (the CNN's --max-tokens) and reads the rest as
    unknown words, instead of a row for every n-gram.

    >>> model = build_nbsvm_cnn(sequence_length=20, vocab_size=1000, num_classes=2)
    >>> model.get_layer("predictions").name
    'predictions'
    """
    from cnnapp.models.text_cnn import ZeroPaddingTokens
    ngram_ids = keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids")
    present = FirstOccurrence(name="binarize")(ngram_ids)
    contribution = NBContribution(vocab_size, num_classes, l2=l2, name="contribution")([ngram_ids, present])
    nb_probs = keras.layers.Activation("softmax", dtype="float32", name="nb_predictions")(
        SumLogits(name="nb_logits")(contribution))

    words = UnigramIds(ngrams, max_words=min(max_words, vocab_size), name="words")(ngram_ids)
    embedded = keras.layers.Embedding(min(max_words, vocab_size), embedding_dim, name="embedding",
                                      embeddings_initializer=keras.initializers.RandomUniform(-0.25, 0.25))(words)
    x = ZeroPaddingTokens(name="zero_padding_tokens")([words, embedded])
    x = keras.layers.ZeroPadding1D(max(region_sizes) - 1, name="edge_padding")(x)
    pooled = [keras.layers.GlobalMaxPooling1D(name=f"maxpool_w{w}")(
        keras.layers.Conv1D(feature_maps, w, activation="relu", name=f"conv_w{w}")(x)) for w in region_sizes]
    x = pooled[0] if len(pooled) == 1 else keras.layers.Concatenate(name="concat")(pooled)
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm) if max_norm else None
    cnn_logits = keras.layers.Dense(num_classes, kernel_constraint=constraint, name="cnn_logits")(x)
    cnn_probs = keras.layers.Activation("softmax", dtype="float32", name="cnn_predictions")(cnn_logits)
    outputs = keras.layers.Average(name="predictions")([nb_probs, cnn_probs])
    model = keras.Model(ngram_ids, outputs, name=name)
    if embedding_matrix is not None:
        model.get_layer("contribution").ratios.assign(np.asarray(embedding_matrix, dtype="float32"))
    return model
