"""What differs between images and sentences, and nothing else.

A task reads its data (a registered source), fits its preprocessor on a training split (a Keras
layer: the same object maps batches in tf.data and runs inside the export), says which data-given
arguments the model factory gets, and which raw inputs the exported signatures take. Everything
else — the model registry, the one training loop, evaluation, the run directory, cross-validation,
ensembles and the export — is shared (`cnnapp.training.run`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import keras

PREPROCESSOR_FILE = "preprocessor.keras"


@dataclass
class Prepared:
    """A task's preprocessing fitted on one training split."""

    preprocessor: keras.layers.Layer      # raw input batch -> model input (saved with the run, baked into the export)
    raw_input: str                        # the raw input's name: image_bytes | sentences
    preprocess: Callable                  # what tf.data maps over in-memory examples (pixels or sentences)
    model_args: dict                      # the data-given arguments of the model factory
    info: dict = field(default_factory=dict)   # facts for config.json, metrics.json and the export metadata
    track: tuple = ()                     # objects the export must track (a vocabulary)


def save_preprocessor(prepared: Prepared, folder: Path) -> Path:
    """The preprocessor as a raw-input Keras model: `inspect` loads it instead of rebuilding it."""
    raw = keras.Input(shape=(), dtype="string", name=prepared.raw_input)
    path = Path(folder) / PREPROCESSOR_FILE
    from cnnapp.atomic import save_model_atomically
    save_model_atomically(keras.Model(raw, prepared.preprocessor(raw), name="preprocessor"), path)
    return path


def load_preprocessor(folder: Path) -> keras.Model:
    import cnnapp.preprocessing.image  # noqa: F401  registers ImageDecoder
    import cnnapp.preprocessing.text  # noqa: F401  registers the standardize functions
    return keras.saving.load_model(str(Path(folder) / PREPROCESSOR_FILE), compile=False)


def export_model(task, model: keras.Model, prepared: Prepared, *, class_names, export_base, name: str,
                 version: int | None = None, metadata: dict | None = None, tta: str | None = None,
                 litert: str = "float") -> Path:
    """Export `model` with the task's raw-input signatures (through the one export function); `tta`
    names the test-time augmentation the run was evaluated with ('flip'), done inside the graph."""
    from cnnapp.export import export_classifier
    from cnnapp.training.recipe import tta_views
    views = tta_views(tta)
    return export_classifier(model, endpoints=task.endpoints(prepared, model, class_names, tta=views),
                             track=prepared.track,
                             class_names=class_names, export_base=export_base, name=name, version=version,
                             metadata={**task.export_metadata(prepared, model), "tta": tta or "none",
                                       **(metadata or {})}, tta=views, litert=litert)
