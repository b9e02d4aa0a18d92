"""The errors a serving request can end in, with the REST status each maps to (gRPC maps the same
status to its code, see grpc_server.py): 400 bad request, 404 unknown model/version/label, 413 too
large, 503 queue full, 504 past the deadline (TF Serving's REST answer to DEADLINE_EXCEEDED)."""

from __future__ import annotations


class ServingError(Exception):
    """A request that cannot be answered; becomes `{"error": message}` with `status`."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        if status is not None:
            self.status = status


class NotFound(ServingError):
    status = 404


class DeadlineExceeded(ServingError):
    status = 504        # TF Serving's REST answer to DEADLINE_EXCEEDED (http_server.cc: GATEWAY_TO)
