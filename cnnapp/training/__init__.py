"""The shared training path: the only compile() and fit() in cnnapp. See `loop.train_classifier`."""

from cnnapp.training.loop import TrainResult, train_classifier  # noqa: F401
