"""The `cnnapp serve` click command: parse options, build a ServerConfig, call serving.server.serve."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--model-base-path", type=click.Path(file_okay=False), default="saved_models", show_default=True,
              help="Folder of <name>/<version>/ SavedModels; every model found is served.")
@click.option("--model-name", default=None, help="Serve only this model from --model-base-path.")
@click.option("--model-config-file", type=click.Path(dir_okay=False), default=None,
              help="TF Serving's model_config_list text file (names, base paths, version policies, labels); "
                   "replaces --model-base-path/--model-name.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0 for all).")
@click.option("--port", "--rest-api-port", type=click.IntRange(0, 65535), default=8501, show_default=True)
@click.option("--enable-batching", is_flag=True, help="Merge concurrent requests into one signature call.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--batch-timeout-micros", type=click.IntRange(min=0), default=1000, show_default=True)
@click.option("--num-batch-threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--max-enqueued-batches", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--max-body", type=click.IntRange(min=1), default=64 * 1024 * 1024, show_default=True,
              help="Largest request body in bytes; larger ones get 413.")
@click.option("--file-system-poll-wait-seconds", "poll_seconds", type=click.FloatRange(min=0), default=1.0,
              show_default=True, help="How often the base paths are polled for new versions (0: never).")
def serve(model_base_path, model_name, model_config_file, host, port, enable_batching, max_batch_size,
          batch_timeout_micros, num_batch_threads, max_enqueued_batches, max_body, poll_seconds):
    """Serve exported models with TensorFlow Serving's REST API (port 8501, /v1/models/<name>).

    \b
      cnnapp serve --model-base-path saved_models
      curl -d '{"instances": ["a moving film"]}' localhost:8501/v1/models/demo-sentences:predict
    """
    import logging
    import os
    from pathlib import Path

    from cnnapp.errors import CnnappError
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    try:
        from cnnapp.serving import (BatchingParameters, ServerConfig, create_app, discover_models,
                                    load_model_config_file)
        from cnnapp.serving.server import serve as bind_and_serve
        if model_config_file:
            models = load_model_config_file(model_config_file)
        else:
            models = discover_models(Path(model_base_path), model_name)
        batching = (BatchingParameters(max_batch_size=max_batch_size, batch_timeout_micros=batch_timeout_micros,
                                       num_batch_threads=num_batch_threads,
                                       max_enqueued_batches=max_enqueued_batches) if enable_batching else None)
        config = ServerConfig(models=models, batching=batching, max_body_bytes=max_body, poll_seconds=poll_seconds)
        serving_app = create_app(config)
    except CnnappError as e:
        raise click.ClickException(str(e)) from None
    verbose = logging.getLogger().isEnabledFor(logging.DEBUG)
    bind_and_serve(serving_app, host=host, port=port, log_level="debug" if verbose else "info")
