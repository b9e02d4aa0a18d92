"""Bind the sockets: gRPC (grpcio) and REST (uvicorn) over one ServingApp — the only module that
touches the network. `run_server(...)` takes tensorflow_model_server's options as plain values and
raises CnnappError (one line) for anything wrong with them; the click command only calls it.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


def build_config(*, model_base_path=None, model_name=None, model_config_file=None, enable_batching=False,
                 batching_parameters_file=None, batching_overrides: dict | None = None, **server_options):
    """tensorflow_model_server's options -> ServerConfig (CnnappError for a bad combination)."""
    from cnnapp.serving.config import (BatchingParameters, ServerConfig, discover_models, is_multi_model_base,
                                       load_batching_parameters_file, load_model_config_file)
    watch_base = None
    if model_config_file:
        if model_name:
            raise CnnappError(f"--model_name: not with --model_config_file (the file names the models). "
                              f"Received: {model_name}")
        models = load_model_config_file(model_config_file)
    else:
        base = Path(model_base_path or "saved_models")
        models = discover_models(base, model_name)
        if model_name is None and is_multi_model_base(base):
            watch_base = base          # cnnapp's extension: models exported there later are served too
    batching = None
    if enable_batching:
        batching = (load_batching_parameters_file(batching_parameters_file) if batching_parameters_file
                    else BatchingParameters(**(batching_overrides or {})))
    elif batching_parameters_file:
        log.warning("--batching_parameters_file is ignored without --enable_batching (as in TF Serving)")
    return ServerConfig(models=models, batching=batching, watch_base=watch_base, **server_options)


def set_tensorflow_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TF Serving's --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (0: TF's
    default, one thread per core). Must run before TensorFlow executes anything."""
    if intra_op or inter_op:
        import tensorflow as tf
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def run_server(*, host: str = "127.0.0.1", port: int = 8500, rest_api_port: int = 8501,
               log_level: str = "info", tensorflow_intra_op_parallelism: int = 0,
               tensorflow_inter_op_parallelism: int = 0, **options) -> None:
    """Load the models, serve gRPC on `port` and REST on `rest_api_port` (0: off) until SIGINT/SIGTERM."""
    if not port and not rest_api_port:
        raise CnnappError("--port and --rest_api_port are both 0: nothing would listen. Received: 0, 0")
    if port and port == rest_api_port:
        raise CnnappError(f"--port is the gRPC port (as in tensorflow_model_server) and --rest_api_port the REST "
                          f"port: they cannot both be {port}. For REST only: --port 0 --rest_api_port {port}. "
                          f"Received: --port {port} --rest_api_port {rest_api_port}")
    if port:
        from cnnapp.serving.grpc_server import check_available
        check_available()                   # before minutes of model loading, not after
    from cnnapp.serving.app import create_app
    config = build_config(**options)
    set_tensorflow_threads(tensorflow_intra_op_parallelism, tensorflow_inter_op_parallelism)
    serving_app = create_app(config)
    loaded = serving_app.manager.available()
    if not any(loaded.values()):
        reasons = [f"{name} v{v}: {s.error}" for name in serving_app.manager.model_names()
                   for v, s in serving_app.manager.version_states(name) if s.error]
        raise CnnappError(f"nothing to serve: no version loaded ({'; '.join(reasons)[:600] or 'no versions'}). "
                          f"Received: {', '.join(serving_app.manager.model_names())}")
    serve(serving_app, host=host, port=port, rest_api_port=rest_api_port, log_level=log_level)


def serve(serving_app, *, host: str = "127.0.0.1", port: int = 8500, rest_api_port: int = 8501,
          log_level: str = "info") -> None:
    """Serve until interrupted; uvicorn's own logs go to stderr like cnnapp's."""
    names = ", ".join(serving_app.manager.model_names())
    grpc_server = None
    if port:
        from cnnapp.serving.grpc_server import start_grpc_server
        grpc_server = start_grpc_server(serving_app, host, port)
        log.info("TF Serving gRPC API (PredictionService, ModelService) for %s on %s:%d", names, host, port)
    try:
        if rest_api_port:
            import uvicorn
            config = uvicorn.Config(serving_app.app, host=host, port=rest_api_port, log_level=log_level,
                                    access_log=log_level == "debug", lifespan="on", interface="asgi3")
            log.info("TF Serving REST API for %s on http://%s:%d/v1/models/<name>", names, host, rest_api_port)
            page_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host   # a wildcard is no address to open
            log.info("page: http://%s:%d/", page_host, rest_api_port)
            uvicorn.Server(config).run()
        else:
            stop = threading.Event()
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            serving_app.manager.start_polling()
            log.info("serving gRPC only (--rest_api_port 0)")
            while not stop.wait(0.5):     # a timed wait lets the signal handler run promptly
                pass
            serving_app.manager.stop()
    finally:
        if grpc_server is not None:
            grpc_server.stop(grace=2)
        serving_app.executor.shutdown(wait=False, cancel_futures=True)
