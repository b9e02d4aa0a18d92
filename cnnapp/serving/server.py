"""Bind the sockets: gRPC (grpcio) and REST (uvicorn) over one ServingApp — the only module that
touches the network. `run_server(...)` takes tensorflow_model_server's options as plain values and
raises CnnappError (one line) for anything wrong with them; the click command only calls it.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
from pathlib import Path

from cnnapp.errors import CnnappError

log = logging.getLogger(__name__)


def build_config(*, model_base_path=None, model_name=None, model_config_file=None, enable_batching=False,
                 batching_parameters_file=None, batching_overrides: dict | None = None,
                 monitoring_config_file=None, **server_options):
    """tensorflow_model_server's options -> ServerConfig (CnnappError for a bad combination).
    Prometheus metrics are served only when `monitoring_config_file` enables them, as in TF Serving."""
    from cnnapp.serving.config import (BatchingParameters, ServerConfig, discover_models, is_multi_model_base,
                                       load_batching_parameters_file, load_model_config_file,
                                       load_monitoring_config_file)
    prometheus_path = load_monitoring_config_file(monitoring_config_file) if monitoring_config_file else None
    watch_base = None
    if model_config_file:
        if model_name:
            raise CnnappError(f"--model_name: not with --model_config_file (the file names the models). "
                              f"Received: {model_name}")
        models = load_model_config_file(model_config_file)
        server_options["model_config_file"] = Path(model_config_file)
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
    return ServerConfig(models=models, batching=batching, watch_base=watch_base, prometheus_path=prometheus_path,
                        **server_options)


def set_tensorflow_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TF Serving's --tensorflow_intra_op_parallelism / --tensorflow_inter_op_parallelism (0: TF's
    default, one thread per core). Must run before TensorFlow executes anything."""
    if intra_op or inter_op:
        import tensorflow as tf
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)


def check_host(host: str) -> None:
    """--host must be an address (or name) of this machine: a CnnappError naming --host, not --port."""
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise CnnappError(f"--host: {host!r} is not an address to bind ({getattr(e, 'strerror', None) or e}); "
                          f"use 127.0.0.1 (this machine only) or 0.0.0.0 (all interfaces). Received: --host {host}") from None


def bind_rest_socket(host: str, port: int) -> socket.socket:
    """Bind the REST port now, before minutes of model loading, so a busy port is one line at once
    (uvicorn said it after loading, with a traceback). Listening starts when uvicorn takes it."""
    check_host(host)
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                         flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # as uvicorn: a TIME_WAIT port rebinds
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise CnnappError(f"--rest_api_port: {host}:{port} is already in use (another server?); pick a free "
                              f"port, or --rest_api_port 0 for gRPC only. Received: --rest_api_port {port}") from None
        if e.errno == errno.EADDRNOTAVAIL:
            raise CnnappError(f"--host: {host} is not an address of this machine. Received: --host {host}") from None
        if e.errno == errno.EACCES:
            raise CnnappError(f"--rest_api_port: binding port {port} needs privileges (ports below 1024); pick "
                              f"another. Received: --rest_api_port {port}") from None
        raise CnnappError(f"--rest_api_port: cannot bind {host}:{port}: {e.strerror}. "
                          f"Received: --rest_api_port {port}") from None
    return sock


def run_server(*, host: str = "127.0.0.1", port: int = 8500, rest_api_port: int = 8501,
               log_level: str = "info", tensorflow_intra_op_parallelism: int = 0,
               tensorflow_inter_op_parallelism: int = 0, allowed_hosts: tuple[str, ...] = (), **options) -> None:
    """Load the models, serve gRPC on `port` and REST on `rest_api_port` (0: off) until SIGINT/SIGTERM.
    `allowed_hosts`: Host names answered beside loopback and `host` (serving/guard.py)."""
    if not port and not rest_api_port:
        raise CnnappError("--port and --rest_api_port are both 0: nothing would listen. Received: 0, 0")
    if port and port == rest_api_port:
        raise CnnappError(f"--port is the gRPC port (as in tensorflow_model_server) and --rest_api_port the REST "
                          f"port: they cannot both be {port}. For REST only: --port 0 --rest_api_port {port}. "
                          f"Received: --port {port} --rest_api_port {rest_api_port}")
    check_host(host)
    rest_socket = bind_rest_socket(host, rest_api_port) if rest_api_port else None
    try:
        _run(host, port, rest_api_port, rest_socket, log_level, tensorflow_intra_op_parallelism,
             tensorflow_inter_op_parallelism, allowed_hosts, options)
    finally:
        if rest_socket is not None:
            rest_socket.close()


def _run(host, port, rest_api_port, rest_socket, log_level, tensorflow_intra_op_parallelism,
         tensorflow_inter_op_parallelism, allowed_hosts, options) -> None:
    if port:
        from cnnapp.serving.grpc_server import check_available
        check_available()                   # before minutes of model loading, not after
    from cnnapp.serving.app import create_app
    from cnnapp.serving.guard import ANY_HOST, allowed_hosts_for
    hosts = allowed_hosts_for(host, allowed_hosts)
    if hosts == (ANY_HOST,):
        log.info("--host %s: any Host header is answered (clients reach the server by names it cannot know); "
                 "--allowed_hosts NAME,... restricts it", host)
    config = build_config(allowed_hosts=hosts, **options)
    set_tensorflow_threads(tensorflow_intra_op_parallelism, tensorflow_inter_op_parallelism)
    serving_app = create_app(config)
    loaded = serving_app.manager.available()
    if not any(loaded.values()):
        serving_app.close()
        raise CnnappError(f"nothing to serve: no model has a version that loads "
                          f"({'; '.join(_why_not_served(serving_app.manager))[:600]}). "
                          f"Received: {', '.join(serving_app.manager.model_names())[:200]}")
    serve(serving_app, host=host, port=port, rest_api_port=rest_api_port, log_level=log_level,
          rest_socket=rest_socket)


def _why_not_served(manager) -> list[str]:
    reasons = []
    for name in manager.model_names():
        states = manager.states_of(name)
        failed = [f"{name} v{v}: {st.error}" for v, st in states if st.error]
        reasons += failed or [f"{name}: no versions under {manager.base_path_of(name)}"]
    return reasons


def serve(serving_app, *, host: str = "127.0.0.1", port: int = 8500, rest_api_port: int = 8501,
          log_level: str = "info", rest_socket: socket.socket | None = None) -> None:
    """Serve until interrupted; uvicorn's own logs go to stderr like cnnapp's. `rest_socket`: the
    REST port already bound (bind_rest_socket); else uvicorn binds it."""
    names = ", ".join(serving_app.manager.model_names())
    grpc_server = None
    if port:
        from cnnapp.serving.grpc_server import start_grpc_server
        grpc_server = start_grpc_server(serving_app, host, port)
        log.info("TF Serving gRPC API (PredictionService, ModelService) for %s on %s:%d", names, host, port)
    try:
        if rest_api_port:
            import uvicorn
            config = uvicorn_config(serving_app, host, rest_api_port, log_level)
            log.info("TF Serving REST API for %s on http://%s:%d/v1/models/<name>", names, host, rest_api_port)
            page_host = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host   # a wildcard is no address to open
            log.info("page: http://%s:%d/", page_host, rest_api_port)
            _Uvicorn(config).run(sockets=[rest_socket] if rest_socket is not None else None)
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


def _Uvicorn(config):
    """uvicorn.Server that says "Uvicorn running on ..." also when handed a bound socket (uvicorn
    leaves that line to whoever bound it; clients and tests wait for it)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets=None):
            await super().startup(sockets=sockets)
            if sockets and self.started:
                host, port = sockets[0].getsockname()[:2]
                logging.getLogger("uvicorn.error").info(
                    "Uvicorn running on http://%s:%d (Press CTRL+C to quit)",
                    f"[{host}]" if ":" in host else host, port)
    return Server(config)


def uvicorn_config(serving_app, host: str, port: int, log_level: str = "info", *, lifespan: str = "on"):
    """The REST server's uvicorn settings (tests run the same ones on a loopback socket)."""
    import uvicorn
    return uvicorn.Config(serving_app.app, host=host, port=port, log_level=log_level,
                          access_log=log_level == "debug", lifespan=lifespan, interface="asgi3",
                          http=rest_protocol(serving_app.config),
                          h11_max_incomplete_event_size=serving_app.config.max_header_bytes)


def rest_protocol(config):
    """uvicorn's HTTP protocol with the head-size limit and head deadline (serving/http_limits.py);
    without httptools, uvicorn's h11 protocol, whose own limit is h11_max_incomplete_event_size."""
    try:
        from cnnapp.serving.http_limits import limited_protocol
    except ImportError:
        log.warning("httptools is not installed: no deadline for request heads (pip install 'uvicorn[standard]')")
        return "h11"
    return limited_protocol(config.max_header_bytes, config.read_timeout_s)
