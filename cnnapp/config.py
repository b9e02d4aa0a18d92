"""Configuration as frozen dataclasses of plain values.

The CLI builds these from its options; the library takes them as arguments (no hidden environment
reads); the resolved config is written to every run directory as config.json.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class TrainConfig:
    """What the shared training loop needs, for any model."""

    name: str
    epochs: int = 15
    batch_size: int = 128                 # per replica; the global batch is batch_size * replicas
    learning_rate: float | None = None    # None: the optimizer's default
    optimizer: str = "adam"
    seed: int = 1337
    deterministic: bool = False           # tf.config.experimental.enable_op_determinism()
    patience: int = 6                     # early stopping on the validation metric; > 2 x lr_patience
    lr_schedule: str = "plateau"          # plateau (ReduceLROnPlateau on val_loss) | cosine (over the epochs)
    lr_patience: int = 2                  # ReduceLROnPlateau
    ema: float = 0.0                      # > 0: weights averaged with this momentum (Polyak); validated and kept
    ensemble: int = 1                     # > 1: train this many members (seeds seed, seed+1, ...) and average them
    monitor: str = "val_accuracy"
    strategy: str = "auto"                # auto | default | mirrored | multi-worker
    precision: str = "auto"               # auto | float32 | mixed_float16 | mixed_bfloat16
    jit: str = "auto"                     # auto | on | off
    run_dir: str = "runs"
    export_base: str = "saved_models"
    export: bool = True
    verbose: int | None = None            # None: progress bar on a terminal, one line per epoch otherwise


@dataclass(frozen=True)
class ImageModelConfig:
    """Architecture of the 2-D CNN (see cnnapp.models.image_cnn.build_image_cnn)."""

    image_size: tuple[int, int] | None = None    # None: the data's own size (folders: 128x128)
    channels: int | None = None                   # None: the data's own channels
    filters: tuple[int, ...] = ()               # (): blocks until the map is 8x8, >= 3 from 24px (models.image_cnn.default_filters)
    kernel_sizes: tuple[int, ...] = (3,)
    strides: tuple[int, ...] = (1,)
    padding: str = "same"
    pool_sizes: tuple[int, ...] = (2,)
    batch_norm: bool = True
    conv_dropout: float = 0.0
    dense_units: tuple[int, ...] = (128,)
    dropout: float = 0.5
    augment: tuple[str, ...] = ()                # names from cnnapp.preprocessing.image.AUGMENTATIONS


@dataclass(frozen=True)
class TextModelConfig:
    """Architecture of the sentence CNN (see cnnapp.models.text_cnn.build_text_cnn)."""

    region_sizes: tuple[int, ...] = (3, 4, 5)
    feature_maps: int = 100
    embedding_dim: int = 128
    embedding_mode: str = "rand"          # rand | static | non-static | multichannel
    embeddings_path: tuple[str, ...] | None = None   # one or more vector files, merged
    dropout: float = 0.5
    max_norm: float | None = 3.0
    edge_padding: bool = True             # Kim's (widest region - 1) zero vectors at both ends
    max_tokens: int | None = 30000
    sequence_length: int | None = None    # None: the longest training sentence (capped at 400), at least the widest region


def to_dict(*configs: Any, **extra: Any) -> dict:
    """Merge dataclass configs into one JSON-ready dict (tuples become lists)."""
    out: dict[str, Any] = {}
    for cfg in configs:
        out[type(cfg).__name__] = dataclasses.asdict(cfg)
    out.update(extra)
    return json.loads(json.dumps(out, default=str))
