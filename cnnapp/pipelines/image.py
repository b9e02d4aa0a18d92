"""train-image: image data -> ImageDecoder -> image CNN -> shared training loop -> export."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from cnnapp.config import ImageModelConfig, TrainConfig, to_dict
from cnnapp.data.images import load_image_data
from cnnapp.export import export_image_classifier
from cnnapp.models.image_cnn import build_image_cnn, default_batch_size, default_filters
from cnnapp.preprocessing.image import ImageDecoder, build_augmenter
from cnnapp.training import train_classifier

log = logging.getLogger(__name__)


def resolve_image_model(model_cfg: ImageModelConfig, image_size, channels) -> ImageModelConfig:
    """Fill the data-dependent defaults (size, channels, filters for larger photos)."""
    filters = model_cfg.filters or default_filters(image_size)
    return dataclasses.replace(model_cfg, image_size=tuple(image_size), channels=channels, filters=tuple(filters))


def image_model_kwargs(model_cfg: ImageModelConfig) -> dict:
    return dict(filters=model_cfg.filters, kernel_sizes=model_cfg.kernel_sizes, strides=model_cfg.strides,
                padding=model_cfg.padding, pool_sizes=model_cfg.pool_sizes, batch_norm=model_cfg.batch_norm,
                conv_dropout=model_cfg.conv_dropout, dense_units=model_cfg.dense_units,
                dropout=model_cfg.dropout)


def train_image(*, data: str | None, dataset: str | None, data_dir: str | None, skip_bad_images: bool,
                model_cfg: ImageModelConfig, train_cfg: TrainConfig):
    """Train, evaluate and (on the chief) export an image classifier. Returns (TrainResult, export_dir)."""
    splits, image_size, channels, source = load_image_data(
        data=data, dataset=dataset, data_dir=data_dir, image_size=model_cfg.image_size,
        channels=model_cfg.channels, skip_bad=skip_bad_images, seed=train_cfg.seed,
        decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c))
    model_cfg = resolve_image_model(model_cfg, image_size, channels)
    name = train_cfg.name or source
    train_cfg = dataclasses.replace(train_cfg, name=name,
                                    batch_size=train_cfg.batch_size or default_batch_size(len(splits.y_train)))
    decoder = ImageDecoder(height=image_size[0], width=image_size[1], channels=channels, name="image_decoder")
    augment = build_augmenter(model_cfg.augment, seed=train_cfg.seed)
    input_shape = (image_size[0], image_size[1], channels)

    result = train_classifier(
        build_model=lambda: build_image_cnn(input_shape=input_shape, num_classes=splits.num_classes,
                                            **image_model_kwargs(model_cfg)),
        splits=splits, preprocess=decoder.resize_pixels, augment=augment, config=train_cfg,
        run_dir=Path(train_cfg.run_dir) / name,
        run_config=to_dict(train_cfg, model_cfg, command="train-image", data=data, dataset=dataset))
    export_dir = None
    if train_cfg.export and result.is_chief:
        export_dir = export_image_classifier(
            result.model, decoder=decoder, class_names=splits.class_names, export_base=train_cfg.export_base,
            name=name, metadata={"run_dir": str(result.run_dir), "metrics": _headline(result.metrics),
                                 "ensemble": train_cfg.ensemble})
    return result, export_dir


def _headline(metrics: dict) -> dict:
    ev = metrics["evaluated_on"]
    return {"evaluated_on": ev, "accuracy": metrics[ev]["accuracy"], "macro_f1": metrics[ev]["macro_f1"]}
