"""Kept for imports written before the split: the servable (one loaded version) is in
serving/servable.py, the manager of versions in serving/manager.py."""

from cnnapp.serving.errors import DeadlineExceeded, NotFound, ServingError  # noqa: F401
from cnnapp.serving.manager import ModelManager, VersionState, folder_stamp  # noqa: F401
from cnnapp.serving.servable import MAX_WARMUP_RECORDS, WARMUP_FILE, Servable, read_signature_defs  # noqa: F401
