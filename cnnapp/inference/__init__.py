"""Answers from an exported SavedModel only: never imports models/, preprocessing/ or training/."""

from cnnapp.inference.inputs import PredictionRows, predict_rows  # noqa: F401
from cnnapp.inference.predictor import Predictor, resolve_model_dir  # noqa: F401
