"""The `cnnapp serve` click command: parse tensorflow_model_server's options, call serving.server.run_server.

Options are spelled as tensorflow_model_server spells them (`--rest_api_port`, `--model_base_path`);
the hyphenated spellings are aliases. `--port` is the gRPC port, as there.
"""

from __future__ import annotations

import click

from cnnapp.cli.errors import library_errors
from cnnapp.cli.options import FiniteFloatRange


def _opt(name: str, *args, **kwargs):
    """`--some_flag` with `--some-flag` as an alias, stored as `some_flag`."""
    return click.option(f"--{name}", f"--{name.replace('_', '-')}", name, *args, **kwargs)


@click.command("serve")
@click.option("--port", type=click.IntRange(0, 65535), default=8500, show_default=True,
              help="gRPC port (PredictionService, ModelService), as in tensorflow_model_server; 0: off.")
@_opt("rest_api_port", type=click.IntRange(0, 65535), default=8501, show_default=True, help="REST port; 0: off.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind (0.0.0.0 for all: then any Host header is answered unless --allowed_hosts).")
@_opt("allowed_hosts", default="", metavar="NAME,...",
      help="Host names the REST server answers to besides 127.0.0.1, localhost, [::1] and --host "
           "(a DNS-rebinding guard; '*': any). Bound to 0.0.0.0 and not given: any.")
@_opt("model_base_path", type=click.Path(file_okay=False), default="saved_models", show_default=True,
      help="One model's folder of <version>/ SavedModels (as in TF Serving), or a folder of <name>/<version>/ "
           "models (cnnapp's extension: all are served, and models added later too).")
@_opt("model_name", default=None, help="Name to serve the model as (default: its folder's name).")
@_opt("model_config_file", type=click.Path(dir_okay=False), default=None,
      help="TF Serving's model_config_list text file; replaces --model_base_path/--model_name.")
@_opt("enable_batching", type=click.BOOL, is_flag=False, flag_value=True, default=False,
      help="Merge concurrent requests into one signature call (also --enable_batching=true, as in TF Serving).")
@_opt("batching_parameters_file", type=click.Path(dir_okay=False), default=None,
      help="TF Serving's batching parameters text file (max_batch_size { value: 64 } ...).")
@_opt("max_batch_size", type=click.IntRange(min=1), default=64, show_default=True)
@_opt("batch_timeout_micros", type=click.IntRange(min=0), default=1000, show_default=True)
@_opt("num_batch_threads", type=click.IntRange(min=1), default=2, show_default=True)
@_opt("max_enqueued_batches", type=click.IntRange(min=1), default=64, show_default=True)
@_opt("max_instances_per_request", type=click.IntRange(min=1), default=10_000, show_default=True,
      help="Examples one request may hold; more get 400 (gRPC: INVALID_ARGUMENT).")
@_opt("rest_api_timeout_in_ms", type=click.IntRange(min=0), default=30_000, show_default=True,
      help="A REST request not answered in this time gets 504, as in TF Serving (0: no limit).")
@_opt("rest_api_read_timeout_in_ms", type=click.IntRange(min=0), default=60_000, show_default=True,
      help="A REST request whose head or body has not arrived in this time gets 408 and is closed (0: no limit).")
@_opt("max_body", type=click.IntRange(min=1), default=64 * 1024 * 1024, show_default=True,
      help="Largest request body (REST) or message (gRPC) in bytes; larger ones are refused.")
@_opt("enable_serialization_as_tensor_content", type=click.BOOL, is_flag=False, flag_value=True, default=False,
      help="gRPC Predict answers in tensor_content instead of the typed fields (float_val, string_val, ...), "
           "as in TF Serving.")
@_opt("file_system_poll_wait_seconds", type=FiniteFloatRange(min=0), default=1.0, show_default=True,
      help="How often the base paths are polled for new versions and models (0: never).")
@_opt("max_num_load_retries", type=click.IntRange(min=0), default=5, show_default=True,
      help="Retries of a failed version load (a changed folder is always retried).")
@_opt("load_retry_interval_micros", type=click.IntRange(min=0), default=60_000_000, show_default=True)
@_opt("tensorflow_intra_op_parallelism", type=click.IntRange(min=0), default=0, show_default=True,
      help="Threads one TensorFlow op may use (0: one per core).")
@_opt("tensorflow_inter_op_parallelism", type=click.IntRange(min=0), default=0, show_default=True,
      help="TensorFlow ops run at once (0: one per core).")
@library_errors
def serve(port, rest_api_port, host, model_base_path, model_name, model_config_file, enable_batching,
          batching_parameters_file, max_batch_size, batch_timeout_micros, num_batch_threads, max_enqueued_batches,
          max_instances_per_request, rest_api_timeout_in_ms, max_body, enable_serialization_as_tensor_content,
          file_system_poll_wait_seconds,
          max_num_load_retries, load_retry_interval_micros, tensorflow_intra_op_parallelism,
          tensorflow_inter_op_parallelism, allowed_hosts, rest_api_read_timeout_in_ms):
    """Serve exported models with TensorFlow Serving's gRPC (8500) and REST (8501) APIs.

    \b
      cnnapp serve --model_base_path saved_models/digits --model_name digits
      curl -d '{"instances": ["a moving film"]}' localhost:8501/v1/models/demo-sentences:predict
    """
    import logging

    from cnnapp.serving.server import run_server
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    run_server(host=host, port=port, rest_api_port=rest_api_port, log_level="debug" if verbose else "info",
               model_base_path=model_base_path, model_name=model_name, model_config_file=model_config_file,
               enable_batching=enable_batching, batching_parameters_file=batching_parameters_file,
               batching_overrides=dict(max_batch_size=max_batch_size, batch_timeout_micros=batch_timeout_micros,
                                       num_batch_threads=num_batch_threads,
                                       max_enqueued_batches=max_enqueued_batches),
               max_instances_per_request=max_instances_per_request, request_timeout_ms=rest_api_timeout_in_ms,
               max_body_bytes=max_body, poll_seconds=file_system_poll_wait_seconds,
               enable_serialization_as_tensor_content=enable_serialization_as_tensor_content,
               max_num_load_retries=max_num_load_retries, load_retry_interval_micros=load_retry_interval_micros,
               tensorflow_intra_op_parallelism=tensorflow_intra_op_parallelism,
               tensorflow_inter_op_parallelism=tensorflow_inter_op_parallelism,
               allowed_hosts=tuple(allowed_hosts.split(",")), read_timeout_s=rest_api_read_timeout_in_ms / 1000)
