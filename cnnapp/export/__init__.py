"""model + preprocessing + class names -> saved_models/<name>/<version>/, atomically."""

from cnnapp.export.saved_model import export_classifier, write_version  # noqa: F401
