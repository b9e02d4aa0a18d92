"""Sentences: a registered text source -> `TextVectorization` adapted on the training split only.

With pretrained vectors (`--embeddings`, for Kim's static / non-static / multichannel modes) the
embedding matrix of the adapted vocabulary is built here and handed to the model factory.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from cnnapp.config import MAX_TOKENS_DEFAULT, STANDARDIZE_DEFAULT
from cnnapp.data import RawData, Splits, with_class_names
from cnnapp.data.text import TextRequest, read_text_data
from cnnapp.errors import CnnappError
from cnnapp.export.explain import SIGNATURE as EXPLAIN, explainable, text_explainer
from cnnapp.preprocessing.text import adapted_vectorizer
from cnnapp.tasks import Prepared

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SentenceTask:
    """>>> run(SentenceTask(TextRequest(data=("rt-polarity.*",), encoding="latin-1")), ...)"""

    request: TextRequest = TextRequest()
    standardize: str = STANDARDIZE_DEFAULT   # one of cnnapp.config.STANDARDIZE
    max_tokens: int | None = MAX_TOKENS_DEFAULT   # vocabulary cap
    sequence_length: int | None = None    # None: the longest training sentence (<= 400), >= the widest filter
    embeddings: tuple[str, ...] = ()      # pretrained vector files (static / non-static / multichannel)
    class_names: tuple[str, ...] = ()     # names for integer labels, in label order (--class-names)
    kind = "text"

    def describe(self) -> dict:
        return {**{k: v for k, v in vars(self.request).items()}, "standardize": self.standardize,
                "max_tokens": self.max_tokens, "sequence_length": self.sequence_length,
                "embeddings": list(self.embeddings), "class_names": list(self.class_names)}

    def preflight(self, *, batch_size: int | None, model_options: dict) -> None:
        """Nothing to check before reading sentences (their sizes come from the data)."""

    def load(self) -> tuple[RawData, str]:
        data, source = read_text_data(self.request)
        return with_class_names(data, self.class_names), source

    def prepare(self, data: RawData, splits: Splits, *, model_options: dict, seed: int) -> Prepared:
        """`model_options` are the model's resolved keyword options (its defaults and the user's)."""
        widest = max(model_options.get("region_sizes") or (1,))
        # The n-gram family (cnnapp.models.nbsvm) reads n-grams, its own vocabulary cap, and NB ratios.
        ngrams = model_options.get("ngrams")
        vectorizer = adapted_vectorizer(splits.x_train, sequence_length=self.sequence_length, min_length=widest,
                                        max_tokens=model_options.get("max_ngrams") if ngrams else self.max_tokens,
                                        standardize=self.standardize, ngrams=ngrams)
        sequence_length = int(vectorizer.get_config()["output_sequence_length"])
        vocab_size = vectorizer.vocabulary_size()
        log.info("vocabulary %d %s, sequence length %d", vocab_size, "n-grams" if ngrams else "tokens", sequence_length)
        if "nb_alpha" in model_options:
            matrix, coverage = nb_ratios(vectorizer, splits.x_train, splits.y_train, num_classes=splits.num_classes,
                                         alpha=model_options["nb_alpha"]), None
        else:
            matrix, coverage = self._embedding_matrix(vectorizer, splits, model_options.get("embedding_mode", "rand"),
                                                      seed)
        return text_prepared(vectorizer, num_classes=splits.num_classes, embedding_matrix=matrix, coverage=coverage)

    def _embedding_matrix(self, vectorizer, splits: Splits, mode: str, seed: int):
        if mode == "rand":
            if self.embeddings:
                log.warning("--embeddings is ignored with --embedding-mode rand")
            return None, None
        if not self.embeddings:
            raise CnnappError(f"--embeddings: the {mode} mode needs pretrained vectors. "
                              f"Received: embedding_mode={mode} with no --embeddings file")
        from cnnapp.data.embeddings import build_embedding_matrix
        return build_embedding_matrix(vectorizer.get_vocabulary(), self.embeddings, seed=seed,
                                      token_counts=training_token_counts(vectorizer, splits.x_train))

    def tta(self, data: RawData, asked: str | None) -> str:
        if asked not in (None, "none"):
            raise CnnappError(f"--tta: sentence models have no test-time augmentation. Received: tta={asked}")
        return "none"

    def augmenter(self, data: RawData, seed: int):
        return None

    def endpoints(self, prepared: Prepared, model, class_names=(), tta=None) -> dict:   # no TTA for sentences
        length = prepared.info["sequence_length"]
        endpoints = {
            "serving_default": (tf.TensorSpec([None], tf.string, name="sentences"), prepared.preprocessor),
            "serving_token_ids": (tf.TensorSpec([None, length], tf.int64, name="token_ids"), lambda ids: ids),
        }
        if class_names and explainable(model) is None:
            endpoints[EXPLAIN] = text_explainer(model, prepared.preprocessor, class_names)
        return endpoints

    def export_metadata(self, prepared: Prepared, model) -> dict:
        return {"kind": "text", "input": "sentences", "standardize": self.standardize,
                "sequence_length": prepared.info["sequence_length"],
                "vocabulary_size": prepared.info["vocabulary_size"],
                **({"ngrams": prepared.info["ngrams"]} if prepared.info.get("ngrams") else {})}


def training_token_counts(vectorizer, sentences) -> dict[str, int]:
    """{vocabulary word: occurrences} in the training sentences, [UNK] counted as itself (chunk by chunk)."""
    from cnnapp.preprocessing.text import sentence_batches
    counts = np.zeros(vectorizer.vocabulary_size(), dtype=np.int64)
    for chunk in sentence_batches(sentences):
        ids = vectorizer(chunk).numpy().ravel()
        counts += np.bincount(ids[ids > 0], minlength=len(counts))
    vocabulary = vectorizer.get_vocabulary()
    return {vocabulary[i]: int(c) for i, c in enumerate(counts) if c and i > 0}


def nb_ratios(vectorizer, sentences, labels, *, num_classes: int, alpha: float = 1.0) -> np.ndarray:
    """Naive-Bayes log-count ratios [vocabulary, classes] of binarized n-grams (Wang & Manning 2012), one-vs-rest:
    r[f, c] = log((p / |p|_1) / (q / |q|_1)) with p = alpha + the sentences of class c holding n-gram f and
    q = alpha + those of the other classes. Read from `sentences` (the training part) chunk by chunk;
    padding and the out-of-vocabulary id get 0."""
    from cnnapp.preprocessing.text import sentence_batches
    vocab = vectorizer.vocabulary_size()
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.zeros(num_classes * vocab, dtype=np.int64)
    start = 0
    for chunk in sentence_batches(sentences, 8192):
        ids = np.sort(vectorizer(chunk).numpy(), axis=1)
        y = labels[start:start + len(ids)]
        start += len(ids)
        first = np.ones(ids.shape, dtype=bool)
        first[:, 1:] = ids[:, 1:] != ids[:, :-1]
        keep = first & (ids >= 2)
        counts += np.bincount((y[:, None] * vocab + ids)[keep], minlength=num_classes * vocab)
    counts = counts.reshape(num_classes, vocab).astype(np.float64)
    counts[:, :2] = 0.0
    p = counts + alpha
    q = counts.sum(axis=0, keepdims=True) - counts + alpha
    p[:, :2] = q[:, :2] = 1.0
    ratios = np.log(p / p[:, 2:].sum(axis=1, keepdims=True)) - np.log(q / q[:, 2:].sum(axis=1, keepdims=True))
    ratios[:, :2] = 0.0
    return ratios.T.astype(np.float32)


def text_prepared(vectorizer, *, num_classes: int, embedding_matrix=None, coverage: dict | None = None) -> Prepared:
    """The preprocessing of a sentence model: its adapted vectorizer, and the model's data-given arguments."""
    sequence_length = int(vectorizer.get_config()["output_sequence_length"])
    info = {"sequence_length": sequence_length, "vocabulary_size": int(vectorizer.vocabulary_size())}
    if vectorizer.get_config().get("ngrams"):
        info["ngrams"] = vectorizer.get_config()["ngrams"]
    if coverage is not None:
        info["embedding_coverage"] = coverage
    return Prepared(preprocessor=vectorizer, raw_input="sentences", preprocess=vectorizer, track=(vectorizer,),
                    model_args={"sequence_length": sequence_length, "vocab_size": vectorizer.vocabulary_size(),
                                "num_classes": num_classes, "embedding_matrix": embedding_matrix},
                    info=info)
