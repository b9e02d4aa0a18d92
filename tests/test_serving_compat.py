"""tensorflow_model_server compatibility of `cnnapp serve`: every flag its main.cc defines is
accepted, the implemented ones work (monitoring config, CORS, tags, threads, --version), and every
export carries TF Serving's warm-up file, which the server replays before a version is AVAILABLE."""

from __future__ import annotations

import logging

import pytest

from conftest import run_cli

httpx = pytest.importorskip("httpx")
pytest.importorskip("tensorflow_serving.apis.prediction_log_pb2")

# Every tensorflow::Flag("...") in tensorflow_serving/model_servers/main.cc of tensorflow/serving at
# commit 9d981c5c2708d23c5407c7c1e30309e6f9798874 (48 flags), in the file's order.
MAIN_CC_FLAGS = """
port grpc_socket_path rest_api_port rest_api_num_threads rest_api_timeout_in_ms rest_api_enable_cors_support
enable_batching allow_version_labels_for_unavailable_models batching_parameters_file
enable_per_model_batching_parameters model_config_file model_config_file_poll_wait_seconds model_name
model_base_path num_load_threads num_unload_threads max_num_load_retries load_retry_interval_micros
file_system_poll_wait_seconds flush_filesystem_caches tensorflow_session_parallelism
tensorflow_session_config_file tensorflow_intra_op_parallelism tensorflow_inter_op_parallelism
use_alts_credentials ssl_config_file platform_config_file per_process_gpu_memory_fraction saved_model_tags
grpc_channel_arguments grpc_max_threads enable_model_warmup num_request_iterations_for_warmup version
monitoring_config_file remove_unused_fields_from_bundle_metagraph prefer_tflite_model num_tflite_pools
num_tflite_interpreters_per_pool enable_signature_method_name_check xla_cpu_compilation_enabled
xla_gpu_compilation_enabled enable_profiler thread_pool_factory_config_file mixed_precision
skip_initialize_tpu enable_grpc_healthcheck_service enable_serialization_as_tensor_content
""".split()


def _value_for(param) -> str:
    """A value of the flag's own type, written as a TF Serving launch script writes it."""
    import click
    kind = param.type
    if isinstance(kind, click.types.BoolParamType):
        return "false"
    if isinstance(kind, (click.types.IntParamType, click.types.FloatParamType)):
        return "1"
    return "x"


def test_help_lists_and_parser_accepts_every_tensorflow_model_server_flag():
    from cnnapp.cli.serve import serve
    assert len(MAIN_CC_FLAGS) == len(set(MAIN_CC_FLAGS)) == 48
    help_text = run_cli(["serve", "--help"]).output
    params = {opt: p for p in serve.params for opt in p.opts}
    missing = [f for f in MAIN_CC_FLAGS if f"--{f}" not in help_text or f"--{f}" not in params]
    assert not missing, f"not in `cnnapp serve --help`: {missing}"
    for flag in MAIN_CC_FLAGS:
        if flag == "version":
            continue        # eager: prints and exits (test_version_flag)
        arg = f"--{flag}={_value_for(params[f'--{flag}'])}"
        ctx = serve.make_context("serve", [arg])   # parse only; no server starts
        assert ctx.params[params[f"--{flag}"].name] is not None, arg


def test_no_effect_flag_warns_once_and_unsafe_flag_is_one_line(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        out = run_cli(["serve", "--grpc_channel_arguments=grpc.max_connection_age_ms=1000", "--num_load_threads=4",
                       "--model_base_path", tmp_path / "absent", "--port", "0"], expect_exit=1).output
    warnings = [r.getMessage() for r in caplog.records if "compatibility" in r.getMessage()]
    assert sorted(warnings) == [
        "--grpc_channel_arguments is accepted for compatibility with tensorflow_model_server and has no effect in "
        "cnnapp serve",
        "--num_load_threads is accepted for compatibility with tensorflow_model_server and has no effect in "
        "cnnapp serve"], warnings
    assert "--model_base_path" in out and "Traceback" not in out
    out = run_cli(["serve", "--ssl_config_file=/etc/ssl.conf"], expect_exit=1).output
    assert out.strip().splitlines()[-1].startswith("Error: --ssl_config_file: not supported"), out


def test_version_flag():
    from importlib import metadata
    from cnnapp import __version__
    out = run_cli(["serve", "--version"]).output
    assert __version__ in out and metadata.version("tensorflow-serving-api") in out, out
    assert run_cli(["serve", "--version=true"]).output == out


def _records(export_dir):
    import tensorflow as tf
    from tensorflow_serving.apis import prediction_log_pb2
    path = export_dir / "assets.extra" / "tf_serving_warmup_requests"
    return [prediction_log_pb2.PredictionLog.FromString(r)
            for r in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]


@pytest.mark.parametrize("name", ["tiny_image", "tiny_text"])
def test_export_writes_tf_serving_warmup_requests(model_base, name):
    from cnnapp.serving.models import read_signature_defs
    export_dir = model_base / name / "1"
    signatures = {k: v for k, v in read_signature_defs(export_dir).items() if not k.startswith("__")}
    records = _records(export_dir)
    named = [r.predict_log.request.model_spec.signature_name for r in records]
    assert sorted(named) == sorted(signatures), named      # one real request per signature
    for r in records:
        request = r.predict_log.request
        assert request.model_spec.name == name
        assert set(request.inputs) == set(signatures[request.model_spec.signature_name].inputs)
    raw = next(r.predict_log.request for r in records if r.predict_log.request.model_spec.signature_name
               == "serving_default")
    value = next(iter(raw.inputs.values())).string_val[0]
    assert value.startswith(b"\x89PNG") if name == "tiny_image" else b" " in value


def test_predict_log_record_is_tensorflow_servings_prediction_log():
    import numpy as np
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
    from cnnapp.export.saved_model import predict_log_record
    inputs = {"image_bytes": np.array([b"\x89PNG" * 40], dtype=object), "class_index": np.zeros([1], np.int32)}
    parsed = prediction_log_pb2.PredictionLog.FromString(predict_log_record("m", "explain", inputs))
    expected = predict_pb2.PredictRequest()
    expected.model_spec.name, expected.model_spec.signature_name = "m", "explain"
    for n, v in inputs.items():
        expected.inputs[n].CopyFrom(tf.make_tensor_proto(v))
    assert parsed.WhichOneof("log_type") == "predict_log" and parsed.predict_log.request == expected


def _warmup_count(serving, name):
    line = [ln for ln in serving.metrics.render().splitlines()
            if ln.startswith(":cnnapp:serving:model_warmup_request_count{") and f'model_name="{name}"' in ln]
    return float(line[0].rsplit(" ", 1)[1]) if line else 0


def test_server_replays_warmup_file_before_available(model_base):
    from cnnapp.serving import ServerConfig, create_app, discover_models
    records = _records(model_base / "tiny_text" / "1")
    serving = create_app(ServerConfig(models=discover_models(model_base, "tiny_text"),
                                      num_request_iterations_for_warmup=2))
    # create_app returns once every version is AVAILABLE: the warm-up ran before that.
    assert serving.manager.status("tiny_text")["model_version_status"][0]["state"] == "AVAILABLE"
    assert _warmup_count(serving, "tiny_text") == 2 * len(records) > 0
    off = create_app(ServerConfig(models=discover_models(model_base, "tiny_text"), enable_model_warmup=False))
    assert _warmup_count(off, "tiny_text") == 0


def test_monitoring_config_file_turns_prometheus_on_at_its_path(model_base, tmp_path):
    from starlette.testclient import TestClient
    from cnnapp.serving import create_app
    from cnnapp.serving.server import build_config
    from cnnapp.errors import CnnappError
    off = TestClient(create_app(build_config(model_base_path=model_base / "tiny_text")).app,
                     base_url="http://localhost")
    assert off.get("/monitoring/prometheus/metrics").status_code == 404       # as in TF Serving
    config_file = tmp_path / "monitoring.config"
    config_file.write_text('prometheus_config {\n  enable: true,\n  path: "/metrics/tf"\n}\n')
    on = TestClient(create_app(build_config(model_base_path=model_base / "tiny_text",
                                            monitoring_config_file=config_file)).app, base_url="http://localhost")
    r = on.get("/metrics/tf")
    assert r.status_code == 200 and "model_warmup_request_count{" in r.text, r.text[:200]
    config_file.write_text("prometheus_config { enable: maybe }")
    with pytest.raises(CnnappError, match="--monitoring_config_file: prometheus_config.enable"):
        build_config(model_base_path=model_base / "tiny_text", monitoring_config_file=config_file)


def test_cors_support_headers_and_preflight(model_base):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app, discover_models
    models = discover_models(model_base, "tiny_text")
    client = TestClient(create_app(ServerConfig(models=models, enable_cors_support=True,
                                                rest_api_num_threads=3)).app, base_url="http://localhost")
    assert client.app.__self__.executor._max_workers == 3
    pre = client.options("/v1/models/tiny_text:predict", headers={"Origin": "https://app.example"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    assert pre.headers["access-control-allow-methods"] == "POST, GET"
    assert pre.headers["access-control-allow-headers"] == "Content-Type"
    bad = client.options("/v1/models/tiny_text:predict")
    assert bad.status_code == 400 and bad.json() == {"error": "Origin header is missing in CORS preflight"}
    r = client.post("/v1/models/tiny_text:predict", json={"instances": ["a good film"]},
                    headers={"Origin": "https://app.example"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*", r.text
    plain = TestClient(create_app(ServerConfig(models=models, enable_model_warmup=False)).app,
                       base_url="http://localhost")
    r = plain.post("/v1/models/tiny_text:predict", json={"instances": ["a good film"]},
                   headers={"Origin": "https://app.example"})
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_saved_model_tags_name_the_metagraph(model_base):
    from cnnapp.serving import ServerConfig, create_app, discover_models
    serving = create_app(ServerConfig(models=discover_models(model_base, "tiny_text"), saved_model_tags=("gpu",)))
    (status,) = serving.manager.status("tiny_text")["model_version_status"]
    assert status["state"] == "END" and "no MetaGraph tagged gpu" in status["status"]["error_message"], status


def test_model_config_file_is_read_again(model_base, tmp_path):
    from cnnapp.serving import create_app
    from cnnapp.serving.codec import NotFound
    from cnnapp.serving.server import build_config
    config_file = tmp_path / "models.config"
    entry = "model_config_list {{ config {{ name: '{0}' base_path: '%s/{0}' model_platform: 'tensorflow' }} }}"
    entry = entry % model_base
    config_file.write_text(entry.format("tiny_text"))
    serving = create_app(build_config(model_config_file=config_file, model_config_file_poll_wait_seconds=1e-9,
                                      enable_model_warmup=False))
    assert serving.manager.model_names() == ["tiny_text"]
    config_file.write_text(entry.format("tiny_image"))
    serving.manager.poll()       # what the poller runs every --model_config_file_poll_wait_seconds
    assert serving.manager.model_names() == ["tiny_image"]
    assert serving.manager.status("tiny_image")["model_version_status"][0]["state"] == "AVAILABLE"
    with pytest.raises(NotFound):
        serving.manager.resolve("tiny_text", None, None)
    config_file.write_text("model_config_list { config {")          # broken: logged, the models keep serving
    serving.manager.poll()
    assert serving.manager.model_names() == ["tiny_image"]


def test_serve_options_default_to_not_set():
    """Every option left out is None (not set): run_server and ServerConfig hold the defaults, in one
    place, and --help still shows them."""
    from cnnapp.cli.serve import serve
    ctx = serve.make_context("serve", [])
    assert {name: value for name, value in ctx.params.items() if value is not None} == {}
    help_text = run_cli(["serve", "--help"]).output
    assert "[default: (8500)" in help_text and "[default: (saved_models)]" in help_text
