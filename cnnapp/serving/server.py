"""Bind the socket: run a ServingApp under uvicorn (the only module that touches the network)."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def serve(serving_app, *, host: str = "127.0.0.1", port: int = 8501, log_level: str = "info") -> None:
    """Serve until interrupted; uvicorn's own logs go to stderr like cnnapp's."""
    import uvicorn
    config = uvicorn.Config(serving_app.app, host=host, port=port, log_level=log_level,
                            access_log=log_level == "debug", lifespan="on")
    server = uvicorn.Server(config)
    log.info("TF Serving REST API for %s on http://%s:%d/v1/models/<name>",
             ", ".join(serving_app.manager.model_names()), host, port)
    server.run()
