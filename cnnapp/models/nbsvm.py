"""NBSVM (Wang & Manning 2012): a linear classifier on naive-Bayes-weighted, binarized n-grams.

n-gram ids -> binarize (each known n-gram counts once a sentence) -> per n-gram and class, the NB
log-count ratio r times a learned weight (1 + u) -> summed over the sentence, plus a bias -> softmax.

The input is the token ids of a `TextVectorization` with `ngrams`: all unigrams of the sentence,
then all bigrams, ... (padding 0, out-of-vocabulary 1, both weighing nothing). The ratios r are
data, not parameters: the sentence task computes them from the training part only (one-vs-rest
log((p/|p|_1) / (q/|q|_1)) with p, q the smoothed counts of sentences holding the n-gram in the
class and outside it: Wang & Manning's r for two classes, -r for the other) and hands them in as
`embedding_matrix` [vocab_size, num_classes]; they are a frozen weight, saved and exported with
the model. Without them (a model built on no data) r is 1.

The weights start at u = 0, so the untrained model is multinomial naive Bayes on binarized
features (MNB, 79.0 on MR in Wang & Manning); training moves each n-gram's weight away from its NB
value under an L2 penalty on u, towards a discriminative model, much as NBSVM's interpolation
between the NB direction and the SVM's weights does. `dropout` drops whole n-grams while training.

`ngrams`, `max_ngrams` and `nb_alpha` are read by the sentence task when it fits the vectorizer
and the ratios (`cnnapp.tasks.sentences`); the factory records them in the model's name only.
"""

from __future__ import annotations

import keras
import numpy as np

from cnnapp.models import register

# Ids below this weigh nothing: 0 is padding, 1 the out-of-vocabulary token.
FIRST_NGRAM_ID = 2


@keras.saving.register_keras_serializable(package="cnnapp")
class FirstOccurrence(keras.layers.Layer):
    """n-gram ids [N, L] -> float [N, L]: 1 at the first occurrence of each known n-gram of a row, else 0
    (binarized features: an n-gram said twice counts once; padding and unknown n-grams count nothing)."""

    def call(self, ngram_ids):
        length = keras.ops.shape(ngram_ids)[1]
        same = keras.ops.equal(ngram_ids[:, :, None], ngram_ids[:, None, :])           # [N, L, L]
        earlier = keras.ops.tril(keras.ops.ones((length, length), dtype="bool"), k=-1)  # j < i
        seen = keras.ops.any(keras.ops.logical_and(same, earlier[None]), axis=-1)
        known = keras.ops.greater_equal(ngram_ids, FIRST_NGRAM_ID)
        return keras.ops.cast(keras.ops.logical_and(known, keras.ops.logical_not(seen)), "float32")

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="cnnapp")
class NBContribution(keras.layers.Layer):
    """[ngram_ids [N, L], present [N, L]] -> each position's addition to each class's logit [N, L, C]:
    present x r[id, c] x (1 + u[id, c]); r frozen (`ratios`), u learned under an L2 penalty."""

    def __init__(self, vocab_size: int, num_classes: int, l2: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.num_classes, self.l2 = int(vocab_size), int(num_classes), float(l2)

    def build(self, input_shape):
        shape = (self.vocab_size, self.num_classes)
        self.ratios = self.add_weight(name="ratios", shape=shape, initializer="ones", trainable=False)
        self.weights_delta = self.add_weight(
            name="weights_delta", shape=shape, initializer="zeros",
            regularizer=keras.regularizers.L2(self.l2) if self.l2 else None)

    def call(self, inputs):
        ngram_ids, present = inputs
        ids = keras.ops.cast(ngram_ids, "int32")
        weight = keras.ops.take(self.ratios, ids, axis=0) * (1.0 + keras.ops.take(self.weights_delta, ids, axis=0))
        return keras.ops.expand_dims(keras.ops.cast(present, weight.dtype), -1) * weight

    def compute_output_shape(self, input_shape):
        return (*input_shape[0], self.num_classes)

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "num_classes": self.num_classes,
                "l2": self.l2}


@keras.saving.register_keras_serializable(package="cnnapp")
class SumLogits(keras.layers.Layer):
    """Contributions [N, L, C] -> logits [N, C]: their sum over the sentence plus a learned bias."""

    def build(self, input_shape):
        self.bias = self.add_weight(name="bias", shape=(int(input_shape[-1]),), initializer="zeros")

    def call(self, contribution):
        return keras.ops.sum(contribution, axis=1) + self.bias

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])


@register("nbsvm", kind="text")
def build_nbsvm(
    *,
    sequence_length: int,
    vocab_size: int,
    num_classes: int,
    embedding_matrix: np.ndarray | None = None,
    ngrams: int = 2,
    max_ngrams: int | None = None,
    nb_alpha: float = 1.0,
    l2: float = 1e-6,
    dropout: float = 0.0,
    name: str = "nbsvm",
) -> keras.Model:
    """Build the NB-weighted linear classifier on n-gram ids [batch, sequence_length]; `embedding_matrix`
    holds the NB log-count ratios [vocab_size, num_classes] (None: all 1).

    >>> model = build_nbsvm(sequence_length=20, vocab_size=1000, num_classes=2)
    >>> [layer.name for layer in model.layers][1:]
    ['binarize', 'contribution', 'logits', 'predictions']
    """
    ngram_ids = keras.Input(shape=(sequence_length,), dtype="int64", name="token_ids")
    present = FirstOccurrence(name="binarize")(ngram_ids)
    if dropout:
        present = keras.layers.Dropout(dropout, name="ngram_dropout")(present)
    contribution = NBContribution(vocab_size, num_classes, l2=l2, name="contribution")([ngram_ids, present])
    logits = SumLogits(name="logits")(contribution)
    outputs = keras.layers.Activation("softmax", dtype="float32", name="predictions")(logits)
    model = keras.Model(ngram_ids, outputs, name=name)
    if embedding_matrix is not None:
        model.get_layer("contribution").ratios.assign(np.asarray(embedding_matrix, dtype="float32"))
    return model
