"""Answers from an exported SavedModel only: never imports models/, preprocessing/ or training/.

`predict_rows` answers with the export's LiteRT model when it has one (cnnapp.inference.litert: no
TensorFlow import), else with the SavedModel (cnnapp.inference.predictor, which imports TensorFlow:
loaded only when used).
"""

from cnnapp.inference.inputs import PredictionRows, predict_rows  # noqa: F401


def __getattr__(name):
    if name in ("Predictor", "resolve_model_dir"):
        from cnnapp.inference import predictor
        return getattr(predictor, name)
    raise AttributeError(f"module 'cnnapp.inference' has no attribute {name!r}")
