"""model + preprocessing + class names -> saved_models/<name>/<version>/, atomically."""

from cnnapp.export.saved_model import (  # noqa: F401
    export_image_classifier, export_text_classifier, write_version,
)
