"""Text preprocessing: one `TextVectorization` layer, adapted on the training split only.

It maps batches of raw sentences to token ids in tf.data while training, and the export runs the
very same layer inside the SavedModel, so served sentences are tokenised exactly as training ones.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cnnapp.errors import CnnappError

from cnnapp.config import MAX_DEFAULT_LENGTH, STANDARDIZE  # noqa: F401  (re-exported)


@keras.saving.register_keras_serializable(package="cnnapp")
def kim_standardize(sentences):
    """Kim (2014)'s clean_str in graph ops: lower-case, punctuation and clitics as their own tokens.

    Non-ASCII letters are kept (unlike clean_str), so accented words stay words.
    """
    s = tf.strings.lower(sentences, encoding="utf-8")
    s = tf.strings.regex_replace(s, r"([.,!?()\";:])", r" \1 ")
    s = tf.strings.regex_replace(s, r"('s|'ve|n't|'re|'d|'ll)\b", r" \1")
    s = tf.strings.regex_replace(s, r"[^\pL\pN.,!?()\";:'`\s-]", " ")
    return tf.strings.regex_replace(s, r"\s+", " ")


@keras.saving.register_keras_serializable(package="cnnapp")
def kim_sst_standardize(sentences):
    """Kim (2014)'s clean_str_sst for already tokenised text: lower-case, and every character other
    than letters, digits and ( ) , ! ? ' ` becomes a space (so "." goes and "re-make" splits).

    Non-ASCII letters are kept, as in `kim_standardize`.
    """
    s = tf.strings.lower(sentences, encoding="utf-8")
    s = tf.strings.regex_replace(s, r"[^\pL\pN(),!?'`\s]", " ")
    return tf.strings.strip(tf.strings.regex_replace(s, r"\s+", " "))


def _standardize_arg(name: str):
    if name not in STANDARDIZE:
        raise CnnappError(f"--standardize: choose from {', '.join(STANDARDIZE)}. Received: {name}")
    return {"kim": kim_standardize, "kim_sst": kim_sst_standardize, "none": None}.get(name, name)


CHUNK = 65536   # sentences per step of the streaming passes below: memory stays bounded at any corpus size


def sentence_batches(sentences, size: int = CHUNK):
    """Consecutive slices of `sentences` as 1-D string tensors (never one tensor of the whole corpus)."""
    for start in range(0, len(sentences), size):
        yield tf.constant(np.asarray(sentences[start:start + size], dtype=object))


def token_counts(sentences, standardize: str = "kim") -> np.ndarray:
    """Tokens per sentence after standardisation (for the data-driven sequence length), chunk by chunk."""
    fn = _standardize_arg(standardize)
    out = []
    for s in sentence_batches(sentences):
        if fn == "lower":
            s = tf.strings.lower(s)
        elif callable(fn):
            s = fn(s)
        out.append(tf.strings.split(s).row_lengths().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def ngram_count(tokens: int, ngrams: int | None) -> int:
    """How many n-grams of widths 1..`ngrams` a sentence of `tokens` tokens has (None: the tokens)."""
    return sum(max(0, tokens - width + 1) for width in range(1, (ngrams or 1) + 1))


def default_sequence_length(sentences, *, min_length: int, standardize: str = "kim", ngrams: int | None = None) -> int:
    """The longest training sentence (capped at 400 tokens), at least the widest filter; with `ngrams`, the
    number of n-grams of widths 1..ngrams of that many tokens (all its unigrams, then all its bigrams, ...)."""
    counts = token_counts(sentences, standardize)
    longest = int(counts.max()) if len(counts) else 0
    return max(min_length, ngram_count(min(longest, MAX_DEFAULT_LENGTH), ngrams))


def make_vectorizer(train_sentences, *, max_tokens: int | None, sequence_length: int,
                    standardize: str = "kim", vocabulary=None, ngrams: int | None = None,
                    adapt: bool = True) -> keras.layers.TextVectorization:
    """A TextVectorization adapted on `train_sentences` (or given a fixed `vocabulary`).

    Sentences shorter than `sequence_length` are padded with 0, longer ones truncated, so a
    one-word sentence and the empty string both map to a valid [sequence_length] row. With
    `ngrams` (the n-gram family) the ids are those of the sentence's n-grams of widths 1..ngrams:
    all its unigrams, then all its bigrams, ...
    """
    vectorizer = keras.layers.TextVectorization(
        max_tokens=max_tokens, standardize=_standardize_arg(standardize), split="whitespace",
        ngrams=ngrams if ngrams and ngrams > 1 else None,
        output_mode="int", output_sequence_length=sequence_length, name="vectorizer")
    if vocabulary is not None:
        vectorizer.set_vocabulary(vocabulary)
    elif not adapt:
        return vectorizer    # adapted by the caller (adapt_counting_tokens)
    else:
        # One streaming pass over batches of the training sentences (no copy of the whole corpus).
        from cnnapp.progress import Progress
        progress = Progress("vocabulary", total=len(train_sentences), unit="sentences")

        def batches():
            for i, batch in enumerate(sentence_batches(train_sentences, 8192)):
                yield batch
                progress.update(min((i + 1) * 8192, len(train_sentences)))
        vectorizer.adapt(batches())
        progress.done()
        if ngrams and ngrams > 1:
            vectorizer.set_vocabulary(unigrams_first(vectorizer.get_vocabulary()))
    vectorizer(tf.constant([""]))  # builds the layer, so it can be tracked for export
    return vectorizer


def unigrams_first(vocabulary: list) -> list:
    """An n-gram vocabulary with its words before its longer n-grams (each group by frequency, as adapted): word
    ids are then 2..words+1, so a model reading only the words (nbsvm_cnn) needs an embedding row for those only."""
    special, rest = list(vocabulary[:2]), [str(t) for t in vocabulary[2:]]
    return special + [t for t in rest if " " not in t] + [t for t in rest if " " in t]


def adapted_vectorizer(train_sentences, *, max_tokens: int | None, sequence_length: int | None, min_length: int,
                       standardize: str = "kim", ngrams: int | None = None) -> keras.layers.TextVectorization:
    """`make_vectorizer` with the data-driven sequence length when `sequence_length` is None: the length pass
    runs in a second thread while the vocabulary is adapted (both are TensorFlow ops that release the GIL,
    so two cores take both passes at once; a million sentences took 23 s one after the other)."""
    if sequence_length is not None:
        return make_vectorizer(train_sentences, max_tokens=max_tokens, sequence_length=sequence_length,
                               standardize=standardize, ngrams=ngrams)
    if not ngrams or ngrams == 1:
        vectorizer = make_vectorizer(None, max_tokens=max_tokens, sequence_length=min_length, standardize=standardize,
                                     vocabulary=None, adapt=False)
        longest = adapt_counting_tokens(vectorizer, train_sentences)
        return make_vectorizer(None, max_tokens=max_tokens, sequence_length=max(min_length, min(longest, MAX_DEFAULT_LENGTH)),
                               standardize=standardize, vocabulary=vectorizer.get_vocabulary())
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(1, thread_name_prefix="cnnapp-lengths") as pool:
        length = pool.submit(default_sequence_length, train_sentences, min_length=min_length, standardize=standardize,
                             ngrams=ngrams)
        adapted = make_vectorizer(train_sentences, max_tokens=max_tokens, sequence_length=min_length,
                                  standardize=standardize, ngrams=ngrams)
        sequence_length = length.result()
    return make_vectorizer(None, max_tokens=max_tokens, sequence_length=sequence_length, standardize=standardize,
                           vocabulary=adapted.get_vocabulary(), ngrams=ngrams)


def adapt_counting_tokens(vectorizer: keras.layers.TextVectorization, sentences) -> int:
    """Give `vectorizer` the vocabulary Keras' `adapt` would learn on `sentences`, in one streaming pass
    that also finds the longest sentence in tokens; returns that length.

    Keras' `adapt` standardises, splits and counts each batch on one thread, and the sequence-length pass
    standardised and split it again. Here tf.data standardises, splits and counts the tokens of each
    batch in parallel (the layer's own standardisation and split, through its `_preprocess`), once; the
    per-batch counts are summed in a hash table, and the vocabulary is ordered as `adapt` orders it (count,
    then token, both descending; `max_tokens` less the padding and OOV tokens kept), so the layer is the
    same (tests/test_text.py checks). 810,000 generated sentences: docs/bench/data.md.
    """
    from cnnapp.progress import Progress
    progress = Progress("vocabulary", total=len(sentences), unit="sentences")
    preprocess = vectorizer._preprocess   # standardise and split, as adapt and the layer's call do

    def count(batch):
        tokens = preprocess(batch)
        if isinstance(tokens, tf.RaggedTensor):
            flat, longest = tokens.flat_values, tf.reduce_max(tf.concat([tokens.row_lengths(), [0]], 0))
        else:
            flat, longest = tf.reshape(tokens, [-1]), tf.shape(tokens, out_type=tf.int64)[1]
        unique, _, counts = tf.unique_with_counts(flat, out_idx=tf.int64)
        return unique, counts, longest

    batch = 8192
    ds = tf.data.Dataset.from_generator(lambda: sentence_batches(sentences, batch),
                                        output_signature=tf.TensorSpec([None], tf.string))
    ds = ds.map(count, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(2)
    table = tf.lookup.experimental.MutableHashTable(tf.string, tf.int64, default_value=0)
    longest = 0
    for i, (unique, counts, length) in enumerate(ds):
        table.insert(unique, counts + table.lookup(unique))
        longest = max(longest, int(length))
        progress.update(min((i + 1) * batch, len(sentences)))
    tokens, counts = (t.numpy() for t in table.export())
    keep = (tokens != b"") & (tokens != b"[UNK]")   # adapt drops the padding and OOV tokens before it ranks
    tokens, counts = tokens[keep], counts[keep]
    order = np.lexsort((tokens, counts))[::-1]
    max_tokens = vectorizer.get_config()["max_tokens"]
    if max_tokens:
        order = order[:max_tokens - 2]   # index 0 is padding, 1 the OOV token
    vocabulary = [t.decode("utf-8") for t in tokens[order]]
    vectorizer.set_vocabulary(["", "[UNK]", *vocabulary])
    progress.done()
    vectorizer(tf.constant([""]))
    return longest
