"""`--model_config_file` as TF Serving reads it (issue 24 item 3): unknown fields and duplicate
names refused in one line with their line, UTF-8 paths kept as written, a model without versions
warned about once and polled for while the others serve, a file naming nothing servable refused at
start, and `--model_config_file_poll_wait_seconds` re-reading it (added, removed, relabelled, moved).
Parsing needs no server; the polling cases use the app object; the start case runs the CLI."""

from __future__ import annotations

import logging
import shutil
import socket

import pytest

from conftest import run_cli

httpx = pytest.importorskip("httpx")
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient`")


def load(tmp_path, text: str):
    from cnnapp.serving import load_model_config_file
    path = tmp_path / "models.config"
    path.write_text(text, encoding="utf-8")
    return load_model_config_file(path)


@pytest.mark.parametrize("text,fragments", [
    ("model_config_list {\n  config {\n    name: 'a'\n    base_path: '/m/a'\n"
     "    model_version_polcy { all {} }\n  }\n}\n",
     ["models.config line 5", "unknown field 'model_version_polcy'", "model_version_policy"]),
    ("model_config_list { config { name: 'a' base_path: '/m/a'\n"
     " model_version_policy { latest { num_versoins: 2 } } } }",
     ["line 2", "unknown field 'num_versoins'", "latest"]),
    ("model_config_lists { config { name: 'a' base_path: '/m/a' } }",
     ["line 1", "unknown field 'model_config_lists'"]),
    ("model_config_list {\n  config { name: 'a' base_path: '/m/a' }\n\n  # the same name again\n"
     "  config {\n    name: 'a'\n    base_path: '/m/b'\n  }\n}\n",
     ["line 6", "model name 'a' is listed twice (first on line 2)"]),
    ("model_config_list { config {\n name: 'a'\n base_path: '/m/a'\n base_path: '/m/b' } }",
     ["line 4", "'base_path' of config is given more than once (first on line 3)"]),
    ("model_config_list { config { name: 'a' base_path: '/m/a'\n version_labels { key: 'x' value: 'one' } } }",
     ["line 2", "value needs an integer"]),
    ("model_config_list { config { name: 'a' base_path: '/m/a' model_platform: 'tflite' } }",
     ["model_platform must be 'tensorflow'", "'tflite'"]),
    ("model_config_list {\n config {\n  name: 'a'\n  base_path: '/m/a'\n", ["line 2", "never closed"]),
])
def test_config_errors_are_one_line_naming_the_field_and_its_line(tmp_path, text, fragments):
    from cnnapp.errors import CnnappError
    with pytest.raises(CnnappError) as e:
        load(tmp_path, text)
    message = str(e.value)
    assert "\n" not in message and message.startswith("--model_config_file"), message
    for fragment in fragments:
        assert fragment in message, message


def test_every_field_tf_serving_defines_is_read(tmp_path):
    (model,) = load(tmp_path, """
        model_config_list {
          config {
            name: "digits"
            base_path: "/models/digits"
            model_platform: "tensorflow"
            model_type: TENSORFLOW
            model_version_policy { specific { versions: 1, versions: 3 } }
            version_labels { key: "stable" value: 1 }
            version_labels { key: "canary" value: 3 }
            logging_config { sampling_config { sampling_rate: 0.1 } }
          }
        }""")
    assert model.name == "digits" and str(model.base_path) == "/models/digits"
    assert model.policy.kind == "specific" and model.policy.versions == (1, 3)
    assert dict(model.labels) == {"stable": 1, "canary": 3}


def test_utf8_base_paths_are_kept_as_written_and_served(tmp_path, model_base):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app
    folder = tmp_path / "modèles" / "texte"
    shutil.copytree(model_base / "tiny_text", folder)
    # As written, and as protobuf's C escapes of the UTF-8 bytes: the same path.
    models = load(tmp_path, f"model_config_list {{ config {{ name: 'tiny_text' base_path: '{folder}' }}\n"
                            f"config {{ name: 'escaped' base_path: 'mod\\303\\250les/texte' }} }}")
    assert [m.base_path for m in models] == [folder, folder]
    assert "modèles" in str(models[0].base_path) and "Ã" not in str(models[0].base_path)
    serving = create_app(ServerConfig(models=models, poll_seconds=0, enable_model_warmup=False))
    client = TestClient(serving.app, base_url="http://localhost")
    for name in ("tiny_text", "escaped"):
        r = client.post(f"/v1/models/{name}:predict", json={"instances": ["a good film"]})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 1, r.text
    serving.close()


def test_a_model_without_versions_is_one_warning_and_is_polled_for(tmp_path, model_base, caplog):
    from starlette.testclient import TestClient
    from cnnapp.serving import ServerConfig, create_app
    empty = tmp_path / "later"
    empty.mkdir()
    text = model_base / "tiny_text"
    models = load(tmp_path, f"model_config_list {{ config {{ name: 'tiny_text' base_path: '{text}' }}\n"
                            f"config {{ name: 'later' base_path: '{empty}' }}\n"
                            f"config {{ name: 'typo' base_path: '{tmp_path / 'no_such_folder'}' }} }}")
    with caplog.at_level(logging.WARNING, logger="cnnapp.serving.manager"):
        serving = create_app(ServerConfig(models=models, enable_model_warmup=False))
        serving.manager.poll()                      # a second poll: no second warning
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and all("no versions found under base path" in w for w in warnings), warnings
    assert "model later:" in warnings[0] and str(empty) in warnings[0] and "polled every 1 s" in warnings[0]
    assert "model typo:" in warnings[1]
    client = TestClient(serving.app, base_url="http://localhost")
    assert client.post("/v1/models/tiny_text:predict", json={"instances": ["a good film"]}).status_code == 200
    r = client.get("/v1/models/later")
    assert r.status_code == 404 and "Could not find any versions of model later" in r.json()["error"], r.text
    shutil.copytree(model_base / "tiny_text" / "1", empty / "1")
    serving.manager.poll()                          # what the poller runs every --file_system_poll_wait_seconds
    assert client.get("/v1/models/later").json()["model_version_status"][0]["state"] == "AVAILABLE"
    assert client.post("/v1/models/later:predict", json={"instances": ["a good film"]}).status_code == 200
    serving.close()


def test_a_config_naming_nothing_servable_is_one_line_exit_1(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "empty").mkdir()
    path = tmp_path / "models.config"
    path.write_text(f"model_config_list {{ config {{ name: 'a' base_path: '{tmp_path / 'empty'}' }}\n"
                    f"config {{ name: 'b' base_path: '{tmp_path / 'missing'}' }} }}")
    out = run_cli(["serve", "--model_config_file", path, "--port", "0", "--rest_api_port", port,
                   "--file_system_poll_wait_seconds", "0"], expect_exit=1).output
    last = out.strip().splitlines()[-1]
    assert last.startswith("Error: nothing to serve") and "a: no versions under" in last \
        and "b: no versions under" in last, out
    assert "Traceback" not in out, out


def test_the_config_file_is_read_again_models_added_removed_relabelled_moved(tmp_path, model_base):
    from starlette.testclient import TestClient
    from cnnapp.serving import create_app
    from cnnapp.serving.server import build_config
    versions = tmp_path / "text"
    for v in (1, 2):
        shutil.copytree(model_base / "tiny_text" / "1", versions / str(v))
    path = tmp_path / "models.config"

    def write(*entries):
        path.write_text("model_config_list {\n" + "\n".join(f"config {{ {e} }}" for e in entries) + "\n}\n")

    text = f"name: 'text' base_path: '{versions}' model_version_policy {{ specific {{ versions: 1 versions: 2 }} }}"
    write(text + " version_labels { key: 'stable' value: 1 }")
    serving = create_app(build_config(model_config_file=path, model_config_file_poll_wait_seconds=1e-9,
                                      enable_model_warmup=False))
    client = TestClient(serving.app, base_url="http://localhost")

    def version(url):
        r = client.get(url)
        return r.json()["model_version_status"][0]["version"] if r.status_code == 200 else r.status_code

    assert version("/v1/models/text/labels/stable") == "1"
    write(text + " version_labels { key: 'stable' value: 2 }")          # relabelled
    serving.manager.poll()
    assert version("/v1/models/text/labels/stable") == "2"
    write(f"name: 'text' base_path: '{versions}'",                       # policy: latest; a model added
          f"name: 'image' base_path: '{model_base / 'tiny_image'}'")
    serving.manager.poll()
    assert [s["version"] for s in client.get("/v1/models/text").json()["model_version_status"]
            if s["state"] == "AVAILABLE"] == ["2"]
    assert version("/v1/models/text/labels/stable") == 404
    assert version("/v1/models/image") == "1"
    write(f"name: 'text' base_path: '{model_base / 'tiny_text'}'")      # moved; image removed
    serving.manager.poll()
    assert serving.manager.model_names() == ["text"]
    assert version("/v1/models/text") == "1" and version("/v1/models/image") == 404
    write("name: 'text' base_path: '/x' model_version_polcy { all {} }")   # refused: the models keep serving
    serving.manager.poll()
    assert version("/v1/models/text") == "1"
    serving.close()
