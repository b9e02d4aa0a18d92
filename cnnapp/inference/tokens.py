"""Sentences -> token ids without TensorFlow, exactly as the export's `TextVectorization` does.

The LiteRT runtime takes token ids, so `predict` tokenises here what the SavedModel tokenises in
its graph (cnnapp.preprocessing.text): the same standardization, whitespace split, vocabulary
lookup (0 padding, 1 `[UNK]`) and padding/truncation to the sequence length. The graph's string
ops are re-stated with their exact semantics:

- `tf.strings.lower(s, encoding="utf-8")` is full Unicode lower-casing (Python's `str.lower`);
  without an encoding (Keras' "lower") it lower-cases ASCII letters only;
- RE2's `\\s` is `[\\t\\n\\f\\r ]` and its `\\b` an ASCII word boundary; `\\pL`/`\\pN` are the Unicode
  categories L* and N*;
- `tf.strings.split` with no separator splits on runs of ASCII whitespace (space, \\t \\n \\v \\f \\r);
- `ngrams=n` looks up all unigrams, then all bigrams, ... up to n-grams, joined by one space.

tests/test_litert.py checks these against the TensorFlow layer on awkward sentences.

`clip_sentence` cuts a sentence after the words that give the model its `sequence_length`
tokens: whole words only, so the tokens the model reads are unchanged by the cut.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np

from cnnapp.errors import CnnappError

_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")          # tf.strings.split's whitespace
_WORD = re.compile(r"[^ \t\n\v\f\r]+")
_RE2_SPACE = re.compile(r"[\t\n\f\r ]+")              # RE2's \s (no \v)
_KIM_PUNCT = re.compile(r"([.,!?()\";:])")
_KIM_CLITIC = re.compile(r"('s|'ve|n't|'re|'d|'ll)\b", re.ASCII)   # RE2's \b is ASCII
_KIM_KEEP = frozenset(".,!?()\";:'`\t\n\f\r -")
_SST_KEEP = frozenset("(),!?'`\t\n\f\r ")
_STRIP_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')   # Keras' DEFAULT_STRIP_REGEX
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _letters_digits_or(text: str, keep: frozenset) -> str:
    """Every character that is neither a letter (\\pL), a number (\\pN) nor in `keep` becomes a space."""
    if text.isascii():   # the common case, without a per-character category lookup
        return "".join(c if c.isalnum() or c in keep else " " for c in text)
    return "".join(c if c in keep or unicodedata.category(c)[0] in "LN" else " " for c in text)


def kim(text: str) -> str:
    """cnnapp.preprocessing.text.kim_standardize."""
    s = _KIM_PUNCT.sub(r" \1 ", text.lower())
    s = _KIM_CLITIC.sub(r" \1", s)
    return _RE2_SPACE.sub(" ", _letters_digits_or(s, _KIM_KEEP))


def kim_sst(text: str) -> str:
    """cnnapp.preprocessing.text.kim_sst_standardize (tf.strings.strip strips ASCII whitespace)."""
    s = _RE2_SPACE.sub(" ", _letters_digits_or(text.lower(), _SST_KEEP))
    return s.strip(" \t\n\v\f\r")


STANDARDIZERS = {
    "kim": kim,
    "kim_sst": kim_sst,
    "lower": lambda s: s.translate(_ASCII_LOWER),
    "lower_and_strip_punctuation": lambda s: _STRIP_PUNCTUATION.sub("", s.translate(_ASCII_LOWER)),
    "strip_punctuation": lambda s: _STRIP_PUNCTUATION.sub("", s),
    "none": lambda s: s,
}


def standardizer(name: str):
    try:
        return STANDARDIZERS[name]
    except KeyError:
        raise CnnappError(f"MODEL: the export's standardization is unknown here; choose --runtime savedmodel. "
                          f"Received: standardize={name}") from None


class Tokenizer:
    """>>> Tokenizer(vocabulary=["", "[UNK]", "good"], sequence_length=4, standardize="kim")(["Good!"])
    array([[2, 1, 0, 0]])  # "good" -> 2, "!" -> [UNK], then padding"""

    def __init__(self, *, vocabulary: list[str], sequence_length: int, standardize: str, ngrams: int | None = None):
        self.standardize = standardizer(standardize)
        self.sequence_length = int(sequence_length)
        self.ngrams = int(ngrams or 1)
        # TextVectorization's vocabulary: index 0 is padding (""), 1 the OOV token; neither is looked up.
        self.index = {token: i for i, token in enumerate(vocabulary) if i >= 2}

    def tokens(self, sentence: str) -> list[str]:
        return _ASCII_SPACE.split(self.standardize(sentence).strip(" \t\n\v\f\r")) if sentence else []

    def __call__(self, sentences: list[str]) -> np.ndarray:
        ids = np.zeros((len(sentences), self.sequence_length), dtype=np.int64)
        for row, sentence in enumerate(sentences):
            words = [t for t in self.tokens(sentence) if t]
            # tf.strings.ngrams with widths 1..n: all unigrams, then all bigrams, ... (joined by a space)
            grams = [" ".join(words[i:i + n]) for n in range(1, self.ngrams + 1) for i in range(len(words) - n + 1)]
            grams = grams[: self.sequence_length]
            ids[row, : len(grams)] = [self.index.get(t, 1) for t in grams]
        return ids

    def clip(self, sentence: str) -> tuple[str, int | None]:
        return clip_sentence(sentence, sequence_length=self.sequence_length, standardize=self.standardize)


def clip_sentence(sentence: str, *, sequence_length: int, standardize) -> tuple[str, int | None]:
    """(`sentence` cut after the words that hold the model's `sequence_length` tokens, the number of words
    it had; or (`sentence`, None) when nothing was cut). `standardize` is a name or a STANDARDIZERS function.

    Cut at whitespace only: standardization works within words (a space ends every rule's context), so
    the first tokens are the same before and after; with n-grams, a sentence of `sequence_length` tokens
    or more fills the sequence with unigrams alone.
    """
    standardize = standardizer(standardize) if isinstance(standardize, str) else standardize
    found, end = 0, 0
    words = _WORD.finditer(sentence)
    for word in words:
        if found >= sequence_length:
            return sentence[:end], len(_WORD.findall(sentence[:end])) + 1 + sum(1 for _ in words)
        found += sum(1 for t in _ASCII_SPACE.split(standardize(word.group())) if t)
        end = word.end()
    return sentence, None
