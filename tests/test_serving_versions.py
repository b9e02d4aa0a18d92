"""Versions and models coming and going under a running app, paths TF Serving would refuse, and the
tensorflow_model_server flags: each against the in-process app and real SavedModels, polling by hand
(`manager.poll()`), so nothing waits on a timer."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import run_cli

pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")

IMAGE_BODY = {"signature_name": "serving_pixels", "instances": [[[[0.0]] * 8] * 8]}


def make(base, **config):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app
    serving = create_app(ServerConfig(**config))
    return serving, TestClient(serving.app, base_url="http://localhost")


def states(serving, name):
    return [(s["version"], s["state"], s["status"]["error_code"])
            for s in serving.manager.status(name)["model_version_status"]]


def test_version_copied_before_its_variables_loads_on_a_later_poll(model_base, tmp_path):
    from cnnapp.serving import discover_models
    shutil.copytree(model_base / "tiny_image", tmp_path / "tiny_image")
    serving, client = make(tmp_path, models=discover_models(tmp_path, "tiny_image"))
    source, late = model_base / "tiny_image" / "1", tmp_path / "tiny_image" / "2"
    # A plain `cp -r` racing the poll: saved_model.pb is there, variables/ not yet.
    late.mkdir()
    for item in ("saved_model.pb", "assets.extra"):
        (shutil.copytree if (source / item).is_dir() else shutil.copy)(source / item, late / item)
    serving.manager.poll()
    assert states(serving, "tiny_image") == [("1", "AVAILABLE", "OK"), ("2", "END", "UNKNOWN")]
    assert "variables" in serving.manager.status("tiny_image", "2")["model_version_status"][0]["status"]["error_message"]
    assert client.post("/v1/models/tiny_image:predict", json=IMAGE_BODY).status_code == 200   # 1 still serves
    serving.manager.poll()      # nothing changed: not retried before the retry interval
    assert states(serving, "tiny_image")[1] == ("2", "END", "UNKNOWN")
    shutil.copytree(source / "variables", late / "variables")      # the copy finishes
    serving.manager.poll()
    assert states(serving, "tiny_image") == [("1", "END", "OK"), ("2", "AVAILABLE", "OK")]
    r = client.post("/v1/models/tiny_image:predict", json=IMAGE_BODY)
    assert r.status_code == 200 and serving.manager.resolve("tiny_image", None, None).version == 2
    serving.manager.stop()


def test_failed_load_is_retried_after_the_interval_even_unchanged(model_base, tmp_path):
    from cnnapp.serving import discover_models
    shutil.copytree(model_base / "tiny_text", tmp_path / "tiny_text")
    broken = tmp_path / "tiny_text" / "2"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    serving, _ = make(tmp_path, models=discover_models(tmp_path, "tiny_text"), load_retry_interval_micros=0,
                      max_num_load_retries=2)
    for attempts in (2, 3, 3):      # first load + 2 retries, then it stays failed
        serving.manager.poll()
        assert serving.manager.version_states("tiny_text", 2)[0][1].attempts == attempts
    assert states(serving, "tiny_text") == [("1", "AVAILABLE", "OK"), ("2", "END", "UNKNOWN")]
    serving.manager.stop()


def test_wrong_kind_version_is_refused_while_the_old_one_serves(model_base, tmp_path):
    from cnnapp.serving import discover_models
    shutil.copytree(model_base / "tiny_image", tmp_path / "tiny_image")
    serving, client = make(tmp_path, models=discover_models(tmp_path))
    before = client.post("/v1/models/tiny_image:predict", json=IMAGE_BODY).json()
    # A text model copied in as version 2 of the image model.
    shutil.copytree(model_base / "tiny_text" / "1", tmp_path / "tiny_image" / ".2.tmp")
    os.rename(tmp_path / "tiny_image" / ".2.tmp", tmp_path / "tiny_image" / "2")
    serving.manager.poll()
    assert states(serving, "tiny_image") == [("1", "AVAILABLE", "OK"), ("2", "END", "FAILED_PRECONDITION")]
    reason = client.get("/v1/models/tiny_image/versions/2").json()["model_version_status"][0]["status"]["error_message"]
    assert "other inputs than version 1" in reason and "sentences" in reason and "image_bytes" in reason
    after = client.post("/v1/models/tiny_image:predict", json=IMAGE_BODY)
    assert after.status_code == 200 and after.json() == before
    assert client.post("/v1/models/tiny_image:predict", json={"instances": ["a good film"]}).status_code == 400
    serving.manager.poll()      # refused once: not reloaded on every poll
    assert states(serving, "tiny_image")[1] == ("2", "END", "FAILED_PRECONDITION")
    serving.manager.stop()


def test_model_exported_after_start_is_served_by_the_next_poll(model_base, tmp_path):
    from cnnapp.serving import discover_models
    shutil.copytree(model_base / "tiny_image", tmp_path / "tiny_image")
    serving, client = make(tmp_path, models=discover_models(tmp_path), watch_base=tmp_path)
    assert client.get("/v1/models/tiny_text").status_code == 404
    shutil.copytree(model_base / "tiny_text", tmp_path / "tiny_text")
    serving.manager.poll()
    assert client.get("/v1/models/tiny_text").json()["model_version_status"][0]["state"] == "AVAILABLE"
    r = client.post("/v1/models/tiny_text:predict", json={"instances": ["a good film"]})
    assert r.status_code == 200 and r.json()["predictions"][0]["classes"] == ["negative", "positive"]
    listing = client.get("/v1/models", follow_redirects=False)
    assert listing.status_code == 200, listing.text
    assert [m["name"] for m in listing.json()["models"]] == ["tiny_image", "tiny_text"]
    serving.manager.stop()


UNICODE_DIGITS = ["%C2%B2", "%E2%91%A0", "%EF%BC%91", "%D9%A1", "1%C2%B2", "%F0%9D%9F%8F", "-1", "+1", "1.0",
                  "0x1", "1e0", "99999999999999999999999", " 1", "%201", "1%00"]


@pytest.mark.parametrize("version", UNICODE_DIGITS)
def test_versions_are_ascii_digits_only(model_base, version):
    """², ①, fullwidth １, Arabic-Indic ١, 𝟏 ...: 404 in TF Serving's shape, never 500 and never version 1."""
    from cnnapp.serving import discover_models
    serving, client = make(model_base, models=discover_models(model_base))
    for method, suffix, body in [("GET", "", None), ("GET", "/metadata", None),
                                 ("POST", ":predict", {"instances": ["a good film"]}),
                                 ("POST", ":classify", {"examples": [{"sentences": "x"}]})]:
        r = client.request(method, f"/v1/models/tiny_text/versions/{version}{suffix}", json=body)
        assert r.status_code in (400, 404), (version, suffix, r.status_code, r.text)
        assert list(r.json()) == ["error"], r.text
    serving.manager.stop()


def test_model_base_path_as_tf_serving_takes_it(model_base, tmp_path):
    """`--model_base_path saved_models/digits --model_name digits`: one model's folder of versions."""
    from cnnapp.serving import discover_models
    [config] = discover_models(model_base / "tiny_image", "digits")
    assert config.name == "digits" and config.base_path == model_base / "tiny_image"
    [config] = discover_models(model_base / "tiny_image")
    assert config.name == "tiny_image"
    serving, client = make(model_base, models=discover_models(model_base / "tiny_image", "digits"))
    assert client.post("/v1/models/digits:predict", json=IMAGE_BODY).status_code == 200
    serving.manager.stop()


def test_cli_one_line_errors(model_base, tmp_path):
    empty = tmp_path / "empty"
    (empty / "model" / "1").mkdir(parents=True)      # a version folder with no SavedModel in it
    result = run_cli(["serve", "--model_base_path", empty], expect_exit=1)
    assert result.output.startswith("Error: --model_base_path: nothing to serve") and "Traceback" not in result.output
    result = run_cli(["serve", "--model_base_path", model_base, "--port", 8501], expect_exit=1)
    assert "--port is the gRPC port" in result.output and "--rest_api_port" in result.output
    result = run_cli(["serve", "--model_base_path", model_base, "--model_name", "nope"], expect_exit=1)
    assert result.output.startswith("Error: --model_name:") and len(result.output.strip().splitlines()) == 1
    result = run_cli(["serve", f"--model_base_path={model_base}", "--rest_api_port=0", "--port=0"], expect_exit=1)
    assert "both 0" in result.output


def test_batching_parameters_file_in_tf_serving_format(tmp_path):
    from cnnapp.errors import CnnappError
    from cnnapp.serving.config import BatchingParameters, load_batching_parameters_file
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 8 }\nbatch_timeout_micros { value: 500 }\n"
                    "num_batch_threads { value: 1 }\npad_variable_length_inputs: true\n")
    assert load_batching_parameters_file(path) == BatchingParameters(max_batch_size=8, batch_timeout_micros=500,
                                                                     num_batch_threads=1)
    path.write_text("max_batch_sise { value: 8 }\n")
    with pytest.raises(CnnappError, match="unknown field 'max_batch_sise'"):
        load_batching_parameters_file(path)
