"""The `cnnapp serve` click command: parse tensorflow_model_server's options, call serving.server.run_server.

Options are spelled as tensorflow_model_server spells them (`--rest_api_port`, `--model_base_path`);
the hyphenated spellings are aliases. `--port` is the gRPC port, as there. Every flag
tensorflow_model_server defines (model_servers/main.cc) is accepted, so its launch scripts run
unchanged: most are implemented; those that change nothing for a CPU server (thread counts, gRPC
channel arguments, file-system caches, GPU/TPU/TFLite/XLA options) log one warning when given; the
three whose absence would not be harmless (TLS, ALTS, a Unix socket) are refused at start.
"""

from __future__ import annotations

import logging

import click

from cnnapp.cli.errors import library_errors
from cnnapp.cli.options import FiniteFloatRange

log = logging.getLogger(__name__)
TF_SERVING_API = "tensorflow-serving-api"      # the distribution whose API cnnapp serve follows

# tensorflow_model_server's flags that change nothing for a CPU server: accepted, one warning when given.
NO_EFFECT = {
    "allow_version_labels_for_unavailable_models": click.BOOL,
    "enable_per_model_batching_parameters": click.BOOL,
    "num_load_threads": click.IntRange(min=0),
    "num_unload_threads": click.IntRange(min=0),
    "flush_filesystem_caches": click.BOOL,
    "tensorflow_session_parallelism": click.IntRange(min=0),
    "tensorflow_session_config_file": click.STRING,
    "platform_config_file": click.STRING,
    "per_process_gpu_memory_fraction": click.FloatRange(0, 1),
    "grpc_channel_arguments": click.STRING,
    "grpc_max_threads": click.IntRange(min=0),
    "remove_unused_fields_from_bundle_metagraph": click.BOOL,
    "prefer_tflite_model": click.BOOL,
    "num_tflite_pools": click.IntRange(min=0),
    "num_tflite_interpreters_per_pool": click.IntRange(min=0),
    "enable_signature_method_name_check": click.BOOL,
    "xla_cpu_compilation_enabled": click.BOOL,
    "xla_gpu_compilation_enabled": click.BOOL,
    "enable_profiler": click.BOOL,
    "thread_pool_factory_config_file": click.STRING,
    "mixed_precision": click.STRING,
    "skip_initialize_tpu": click.BOOL,
    "enable_grpc_healthcheck_service": click.BOOL,
}
# Ignoring these would not be harmless (a client expecting TLS or a socket file): parsed, refused at start.
UNSUPPORTED = {
    "grpc_socket_path": (click.STRING, "gRPC listens on --port only"),
    "ssl_config_file": (click.STRING, "no TLS: put a TLS-terminating proxy in front"),
    "use_alts_credentials": (click.BOOL, "no ALTS credentials"),
}


def _opt(name: str, *args, **kwargs):
    """`--some_flag` with `--some-flag` as an alias, stored as `some_flag`."""
    return click.option(*dict.fromkeys((f"--{name}", f"--{name.replace('_', '-')}")), name, *args, **kwargs)


def _compat_options(command):
    for name, kind in reversed(NO_EFFECT.items()):
        command = _opt(name, type=kind, default=None, is_flag=False,
                       **({"flag_value": True} if kind is click.BOOL else {}),
                       help="Accepted for compatibility with tensorflow_model_server; no effect here.")(command)
    for name, (kind, why) in reversed(UNSUPPORTED.items()):
        command = _opt(name, type=kind, default=None, is_flag=False,
                       **({"flag_value": True} if kind is click.BOOL else {}),
                       help=f"tensorflow_model_server's; refused here ({why}).")(command)
    return command


def _print_version(ctx, param, value):
    if not value or ctx.resilient_parsing:
        return
    from importlib import metadata

    from cnnapp import __version__
    try:
        api = metadata.version(TF_SERVING_API)
    except metadata.PackageNotFoundError:
        api = "2.21.0 (tensorflow-serving-api not installed)"
    click.echo(f"cnnapp serve {__version__}\nTensorFlow ModelServer API: {api}")
    ctx.exit(0)


@click.command("serve")
@_opt("version", type=click.BOOL, is_flag=False, flag_value=True, default=False, is_eager=True,
      expose_value=False, callback=_print_version,
      help="Print cnnapp's version and the TF Serving API version it follows, and exit.")
@click.option("--port", type=click.IntRange(0, 65535), default=None, show_default="8500",
              help="gRPC port (PredictionService, ModelService), as in tensorflow_model_server; 0: off.")
@_opt("rest_api_port", type=click.IntRange(0, 65535), default=None, show_default="8501", help="REST port; 0: off.")
@click.option("--host", default=None, show_default="127.0.0.1",
              help="Address to bind (0.0.0.0 for all: then any Host header is answered unless --allowed_hosts).")
@_opt("allowed_hosts", default=None, metavar="NAME,...",
      help="Host names the REST server answers to besides 127.0.0.1, localhost, [::1] and --host "
           "(a DNS-rebinding guard; '*': any). Bound to 0.0.0.0 and not given: any.")
@_opt("model_base_path", type=click.Path(file_okay=False), default=None, show_default="saved_models",
      help="One model's folder of <version>/ SavedModels (as in TF Serving), or a folder of <name>/<version>/ "
           "models (cnnapp's extension: all are served, and models added later too).")
@_opt("model_name", default=None, help="Name to serve the model as (default: its folder's name).")
@_opt("model_config_file", type=click.Path(dir_okay=False), default=None,
      help="TF Serving's model_config_list text file; replaces --model_base_path/--model_name.")
@_opt("enable_batching", type=click.BOOL, is_flag=False, flag_value=True, default=None,
      help="Merge concurrent requests into one signature call (also --enable_batching=true, as in TF Serving).")
@_opt("batching_parameters_file", type=click.Path(dir_okay=False), default=None,
      help="TF Serving's batching parameters text file (max_batch_size { value: 64 } ...).")
@_opt("max_batch_size", type=click.IntRange(min=1), default=None, show_default="64")
@_opt("batch_timeout_micros", type=click.IntRange(min=0), default=None, show_default="1000")
@_opt("num_batch_threads", type=click.IntRange(min=1), default=None, show_default="2")
@_opt("max_enqueued_batches", type=click.IntRange(min=1), default=None, show_default="64")
@_opt("max_instances_per_request", type=click.IntRange(min=1), default=None, show_default="10000",
      help="Examples one request may hold; more get 400 (gRPC: INVALID_ARGUMENT).")
@_opt("rest_api_timeout_in_ms", type=click.IntRange(min=0), default=None, show_default="30000",
      help="A REST request not answered in this time gets 504, as in TF Serving (0: no limit).")
@_opt("rest_api_read_timeout_in_ms", type=click.IntRange(min=0), default=None, show_default="60000",
      help="A REST request whose head or body has not arrived in this time gets 408 and is closed (0: no limit).")
@_opt("max_body", type=click.IntRange(min=1), default=None, show_default="67108864 (64 MiB)",
      help="Largest request body (REST) or message (gRPC) in bytes; larger ones are refused.")
@_opt("enable_serialization_as_tensor_content", type=click.BOOL, is_flag=False, flag_value=True, default=None,
      help="gRPC Predict answers in tensor_content instead of the typed fields (float_val, string_val, ...), "
           "as in TF Serving.")
@_opt("file_system_poll_wait_seconds", type=FiniteFloatRange(min=0), default=None, show_default="1.0",
      help="How often the base paths are polled for new versions and models (0: never).")
@_opt("max_num_load_retries", type=click.IntRange(min=0), default=None, show_default="5",
      help="Retries of a failed version load (a changed folder is always retried).")
@_opt("load_retry_interval_micros", type=click.IntRange(min=0), default=None, show_default="60000000")
@_opt("tensorflow_intra_op_parallelism", type=click.IntRange(min=0), default=None, show_default="0",
      help="Threads one TensorFlow op may use (0: one per core).")
@_opt("tensorflow_inter_op_parallelism", type=click.IntRange(min=0), default=None, show_default="0",
      help="TensorFlow ops run at once (0: one per core).")
@_opt("rest_api_num_threads", type=click.IntRange(min=0), default=None, show_default="0",
      help="REST worker threads (decoding and running large requests); 0: 16.")
@_opt("rest_api_enable_cors_support", type=click.BOOL, is_flag=False, flag_value=True, default=None,
      help="Add TF Serving's CORS headers to every REST answer and answer OPTIONS preflights.")
@_opt("saved_model_tags", default=None, show_default="serve", metavar="TAG,...",
      help="The SavedModel MetaGraph loaded: its tag set, comma-separated.")
@_opt("enable_model_warmup", type=click.BOOL, is_flag=False, flag_value=True, default=None, show_default="true",
      help="Before a version is AVAILABLE, replay its assets.extra/tf_serving_warmup_requests (or, without "
           "that file, one request per signature).")
@_opt("num_request_iterations_for_warmup", type=click.IntRange(min=0), default=None, show_default="0",
      help="Times each warm-up request is run (0: once).")
@_opt("monitoring_config_file", type=click.Path(dir_okay=False), default=None,
      help="TF Serving's MonitoringConfig text file: prometheus_config { enable: true path: "
           "\"/monitoring/prometheus/metrics\" } serves metrics on that path of the REST port (off without it).")
@_opt("model_config_file_poll_wait_seconds", type=click.IntRange(min=0), default=None, show_default="0",
      help="Read --model_config_file again this often: models added are served, removed ones unloaded (0: once).")
@_compat_options
@library_errors
def serve(model_base_path, rest_api_read_timeout_in_ms, rest_api_num_threads, saved_model_tags, allowed_hosts,
          max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches, **options):
    """Serve exported models with TensorFlow Serving's gRPC (8500) and REST (8501) APIs.

    \b
      cnnapp serve --model_base_path saved_models/digits --model_name digits
      curl -d '{"instances": ["a moving film"]}' localhost:8501/v1/models/demo-sentences:predict
    """
    import logging

    from cnnapp.errors import CnnappError
    from cnnapp.serving.server import run_server
    compat = {name: options.pop(name) for name in (*NO_EFFECT, *UNSUPPORTED)}
    for name, (_, why) in UNSUPPORTED.items():
        if compat[name]:
            raise CnnappError(f"--{name}: not supported by cnnapp serve ({why}). Received: --{name}={compat[name]}")
    for name in NO_EFFECT:
        if compat[name] is not None:
            log.warning("--%s is accepted for compatibility with tensorflow_model_server and has no effect in "
                        "cnnapp serve", name)
    # Options left out stay out: run_server and ServerConfig hold the defaults (one place), shown in --help.
    given = {RENAMED.get(name, name): value for name, value in options.items() if value is not None}
    if model_base_path is not None:
        given["model_base_path"] = model_base_path
    if saved_model_tags is not None:
        tags = tuple(t.strip() for t in saved_model_tags.split(",") if t.strip())
        if not tags:
            raise CnnappError(f"--saved_model_tags: needs at least one tag (e.g. serve). Received: {saved_model_tags!r}")
        given["saved_model_tags"] = tags
    if allowed_hosts is not None:
        given["allowed_hosts"] = tuple(allowed_hosts.split(","))
    if rest_api_read_timeout_in_ms is not None:
        given["read_timeout_s"] = rest_api_read_timeout_in_ms / 1000
    if rest_api_num_threads:            # 0: the default, as in TF Serving
        given["rest_api_num_threads"] = rest_api_num_threads
    batching = {name: value for name, value in [("max_batch_size", max_batch_size),
                                                 ("batch_timeout_micros", batch_timeout_micros),
                                                 ("num_batch_threads", num_batch_threads),
                                                 ("max_enqueued_batches", max_enqueued_batches)] if value is not None}
    if batching:
        given["batching_overrides"] = batching
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    run_server(log_level="debug" if verbose else "info", **given)


# The CLI's spelling -> run_server's keyword, where they differ.
RENAMED = {"rest_api_timeout_in_ms": "request_timeout_ms", "max_body": "max_body_bytes",
           "file_system_poll_wait_seconds": "poll_seconds", "rest_api_enable_cors_support": "enable_cors_support"}
