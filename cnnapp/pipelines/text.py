"""train-text: sentences -> TextVectorization -> sentence CNN -> shared training loop -> export."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cnnapp.config import TextModelConfig, TrainConfig, to_dict
from cnnapp.data.text import load_text_data
from cnnapp.export import export_text_classifier
from cnnapp.models.text_cnn import build_text_cnn
from cnnapp.preprocessing.text import default_sequence_length, make_vectorizer
from cnnapp.training import train_classifier

log = logging.getLogger(__name__)


def text_model_kwargs(model_cfg: TextModelConfig) -> dict:
    return dict(region_sizes=model_cfg.region_sizes, feature_maps=model_cfg.feature_maps,
                embedding_dim=model_cfg.embedding_dim, embedding_mode=model_cfg.embedding_mode,
                dropout=model_cfg.dropout, max_norm=model_cfg.max_norm)


def prepare_text(splits, model_cfg: TextModelConfig, *, standardize: str = "kim"):
    """Adapt the vectorizer on the training split only; return (vectorizer, resolved config)."""
    sequence_length = model_cfg.sequence_length or default_sequence_length(
        splits.x_train, min_length=max(model_cfg.region_sizes), standardize=standardize)
    vectorizer = make_vectorizer(splits.x_train, max_tokens=model_cfg.max_tokens,
                                 sequence_length=sequence_length, standardize=standardize)
    return vectorizer, dataclasses.replace(model_cfg, sequence_length=sequence_length)


def train_text(*, data: str | None, dev: str | None, test: str | None, encoding: str,
               model_cfg: TextModelConfig, train_cfg: TrainConfig, standardize: str = "kim"):
    """Train, evaluate and (on the chief) export a sentence classifier. Returns (TrainResult, export_dir)."""
    splits, source = load_text_data(data=data, dev=dev, test=test, encoding=encoding, seed=train_cfg.seed)
    name = train_cfg.name or source
    train_cfg = dataclasses.replace(train_cfg, name=name)
    vectorizer, model_cfg = prepare_text(splits, model_cfg, standardize=standardize)
    vocab_size = vectorizer.vocabulary_size()
    log.info("vocabulary %d tokens, sequence length %d", vocab_size, model_cfg.sequence_length)

    result = train_classifier(
        build_model=lambda: build_text_cnn(sequence_length=model_cfg.sequence_length, vocab_size=vocab_size,
                                           num_classes=splits.num_classes, **text_model_kwargs(model_cfg)),
        splits=splits, preprocess=vectorizer, config=train_cfg, run_dir=Path(train_cfg.run_dir) / name,
        run_config=to_dict(train_cfg, model_cfg, command="train-text", data=data, dev=dev, test=test,
                           encoding=encoding, standardize=standardize))
    export_dir = None
    if train_cfg.export and result.is_chief:
        export_dir = export_text_classifier(
            result.model, vectorizer=vectorizer, class_names=splits.class_names,
            export_base=train_cfg.export_base, name=name,
            metadata={"run_dir": str(result.run_dir)})
    return result, export_dir
