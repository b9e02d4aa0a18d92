"""cnnapp: train, inspect and serve convolutional classifiers for images and sentences."""

__version__ = "0.1.0"
