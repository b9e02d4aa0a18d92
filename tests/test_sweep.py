"""`cnnapp sweep`: hyperparameter sweeps on keras-tuner, with real (tiny) training on the embedded demo
sentences: 1 epoch, 4 feature maps, 8-dimensional embeddings, so a trial takes seconds.

What is checked: a spec sweep writes its table and a best command the CLI parses (and --export-best
exports it); a killed sweep resumes without running a finished trial again; two local workers share one
sweep, each trial run once; bad specs are one error line; a failing trial is recorded FAILED and the
sweep goes on; Zhang & Wallace's stages; and the keras-tuner pieces cnnapp fixes (grid resume, protos).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli

TINY = ["--epochs", "1", "--feature-maps", "4", "--embedding-dim", "8", "--batch-size", "64"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def sweep_args(tmp_path: Path, name: str, *extra) -> list[str]:
    return ["sweep", "text", *TINY, "--run-dir", str(tmp_path / "runs"), "--export-base", str(tmp_path / "models"),
            "--name", name, *extra]


def write_spec(tmp_path: Path, spec: dict | str, filename: str = "space.json") -> Path:
    path = tmp_path / filename
    path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
    return path


def summary(sweep_dir: Path) -> dict:
    return json.loads((sweep_dir / "sweep.json").read_text())


def record(sweep_dir: Path, trial: str) -> dict:
    return json.loads((sweep_dir / "trials" / trial / "sweep_trial.json").read_text())


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_spec_sweep_writes_its_table_and_a_best_command_that_trains_and_exports(tmp_path):
    spec = write_spec(tmp_path, {"method": "grid", "params": {"region_sizes": ["2", "2,3"]}})
    result = run_cli(sweep_args(tmp_path, "tiny", "--spec", spec, "--export-best"))
    sweep_dir = tmp_path / "runs" / "tiny" / "sweep"
    s = summary(sweep_dir)
    assert [t["trial"] for t in sorted(s["trials"], key=lambda t: t["trial"])] == ["spec-0", "spec-1"]
    for t in s["trials"]:
        assert t["status"] == "COMPLETED" and 0.0 <= t["accuracy"] <= 1.0 and t["seconds"] > 0, t
        assert "test_accuracy" in t and t["epochs"] == 1.0, t   # the test accuracy beside, the dev one chosen on
    table = (sweep_dir / "sweep.md").read_text()
    for t in s["trials"]:
        assert f"| {t['trial']} | {t['varied']['region_sizes']} | {t['accuracy']:.4f} |" in table, table
    assert len((sweep_dir / "sweep.csv").read_text().splitlines()) == 3
    best = s["best"]
    assert best["accuracy"] == max(t["accuracy"] for t in s["trials"])
    argv = shlex.split(best["command"])
    assert argv[:2] == ["cnnapp", "train-text"] and f"command: {best['command']}" in result.output
    from cnnapp.cli.train import train_text
    parsed = train_text.make_context("train-text", argv[2:]).params   # the printed line is a valid command
    assert parsed["region_sizes"] == tuple(best["values"]["region_sizes"])
    assert (parsed["feature_maps"], parsed["embedding_dim"], parsed["epochs"], parsed["name"]) == (4, 8, 1, "tiny")
    export = tmp_path / "models" / "tiny" / "1"
    assert (export / "saved_model.pb").exists() and f"exported: {export}" in result.output, result.output[-1500:]
    config = json.loads((tmp_path / "runs" / "tiny" / "config.json").read_text())
    assert config["model"]["options"]["region_sizes"] == best["values"]["region_sizes"]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_a_killed_sweep_resumes_without_running_finished_trials_again(tmp_path):
    spec = write_spec(tmp_path, {"params": {"region_sizes": ["1", "2", "3"]}})
    args = sweep_args(tmp_path, "killed", "--spec", spec)
    sweep_dir = tmp_path / "runs" / "killed" / "sweep"
    first = sweep_dir / "spec" / "trial_0" / "trial.json"
    proc = subprocess.Popen([sys.executable, "-m", "cnnapp", *args], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    try:
        while not (first.exists() and json.loads(first.read_text())["status"] == "COMPLETED"):
            assert time.monotonic() < deadline, "the first trial did not finish within 300 s"
            try:   # a bounded wait on the process: it must not end before it is killed
                proc.wait(timeout=0.2)
                pytest.fail(f"the sweep ended before it was killed:\n{proc.stdout.read()[-2000:]}")
            except subprocess.TimeoutExpired:
                pass
    finally:
        proc.kill()
        proc.wait()
    finished = record(sweep_dir, "spec-0")
    assert finished["status"] == "COMPLETED" and finished["attempts"] == 1

    run_cli(args)   # the same command again
    s = summary(sweep_dir)
    assert sorted(t["trial_id"] for t in s["trials"]) == ["0", "1", "2"]
    assert all(t["status"] == "COMPLETED" for t in s["trials"]), s["trials"]
    assert record(sweep_dir, "spec-0") == finished            # not run again: its record is untouched
    assert sorted(p.name for p in (sweep_dir / "trials").iterdir()) == ["spec-0", "spec-1", "spec-2"]

    records = [record(sweep_dir, f"spec-{i}") for i in range(3)]
    run_cli(args)   # a finished sweep: nothing runs
    assert [record(sweep_dir, f"spec-{i}") for i in range(3)] == records


def test_a_rerun_with_other_settings_is_refused_in_one_line(tmp_path):
    spec = write_spec(tmp_path, {"params": {"region_sizes": ["2"]}})
    run_cli(sweep_args(tmp_path, "fp", "--spec", spec))
    result = run_cli(sweep_args(tmp_path, "fp", "--spec", spec) + ["--epochs", "2"], expect_exit=1)
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "other settings" in errors[0] and "epochs: 1 -> 2" in errors[0], result.output
    assert "--fresh" in errors[0]


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_two_local_workers_share_one_sweep_and_run_each_trial_once(tmp_path):
    spec = write_spec(tmp_path, {"params": {"region_sizes": ["1", "2", "3"]}})
    result = run_cli(sweep_args(tmp_path, "shared", "--spec", spec, "--workers", "2"))
    sweep_dir = tmp_path / "runs" / "shared" / "sweep"
    trials = summary(sweep_dir)["trials"]
    assert sorted(t["trial_id"] for t in trials) == ["0", "1", "2"], result.output[-3000:]
    assert all(t["status"] == "COMPLETED" for t in trials), trials
    records = [record(sweep_dir, t["trial"]) for t in trials]
    assert all(r["attempts"] == 1 for r in records), records
    assert {r["tuner_id"] for r in records} <= {"worker0", "worker1"}   # the chief never trains
    assert "[sweep] the chief and 2 worker(s) finished" in result.output
    assert "best: spec-" in result.output


BAD_SPECS = [
    ("unknown-name", {"params": {"nope": [1, 2]}}, "space.json", "unknown hyperparameter 'nope'"),
    ("empty-list", {"params": {"feature_maps": []}}, "space.json", "feature_maps: the list of values is empty"),
    ("empty-range", {"params": {"dropout": {"min": 0.5, "max": 0.1}}}, "space.json", "dropout: the range is empty"),
    ("bad-value", {"params": {"optimizer": ["adam", "nope"]}}, "space.json", "optimizer: each value must be one of"),
    ("bad-weight", {"params": {"class_weight": ["balanced", "heavy"]}}, "space.json",
     "class_weight: each value must be one of balanced, none"),
    ("not-json", '{"params": {"dropout": [0.1,]}}', "space.json", "space.json line 1 column"),
    ("not-toml", "params = {dropout = [0.1,", "space.toml", "space.toml is not valid TOML"),
    ("missing-file", None, "no-such.json", "--spec: no such file. Received: spec="),
]


@pytest.mark.parametrize("case, spec, filename, needle", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_a_bad_spec_is_one_error_line_naming_it(case, spec, filename, needle, tmp_path):
    path = write_spec(tmp_path, spec, filename) if spec is not None else tmp_path / filename
    result = run_cli(sweep_args(tmp_path, "bad", "--spec", path), expect_exit=1)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.output[-2000:]
    assert not (tmp_path / "runs").exists()   # refused before any trial


def test_a_failing_trial_is_recorded_failed_and_the_sweep_goes_on(tmp_path):
    # A region size wider than the fixed sequence length is refused by the model factory, inside the trial.
    spec = write_spec(tmp_path, {"params": {"region_sizes": ["9", "2"]}})
    result = run_cli(sweep_args(tmp_path, "failing", "--spec", spec, "--sequence-length", "5"))
    sweep_dir = tmp_path / "runs" / "failing" / "sweep"
    by_size = {tuple(t["values"]["region_sizes"]): t for t in summary(sweep_dir)["trials"]}
    failed, completed = by_size[(9,)], by_size[(2,)]
    assert failed["status"] == "FAILED" and "--sequence-length" in failed["reason"] and "9" in failed["reason"]
    assert "\n" not in failed["reason"] and "accuracy" not in failed
    assert completed["status"] == "COMPLETED" and summary(sweep_dir)["best"]["trial"] == completed["trial"]
    trial_json = json.loads((sweep_dir / "spec" / f"trial_{failed['trial_id']}" / "trial.json").read_text())
    assert trial_json["status"] == "FAILED" and trial_json["message"] == failed["reason"]   # keras-tuner's record
    assert "FAILED: --sequence-length" in (sweep_dir / "sweep.md").read_text()
    assert "stage spec: 1 of 2 trial(s) completed" in result.output


def test_zhang_wallace_stages_are_built_from_the_previous_winners():
    from cnnapp.errors import CnnappError
    from cnnapp.sweep.plan import parse_region_range, parse_stages, region_combinations, zhang_wallace_stage
    assert region_combinations(1) == [(1,), (1, 2), (1, 2, 3)]   # sizes below 1 left out
    combos = region_combinations(7)
    assert combos[0] == (7,) and (6, 7, 8) in combos and (5, 6, 7) in combos and len(combos) == 8
    assert all(len(set(c)) == len(c) and min(c) >= 1 for c in combos)   # text_cnn has one branch per width
    stage = zhang_wallace_stage("combos", winners={"region_sizes": (4,)}, base_options={})
    assert stage.params[0].values[:3] == ("4", "3,4", "4,5") and stage.fixed == ()
    maps = zhang_wallace_stage("maps", winners={"region_sizes": (3, 4, 5)}, base_options={})
    assert maps.varied == ("feature_maps",) and maps.fixed == (("region_sizes", "3,4,5"),)
    dropout = zhang_wallace_stage("dropout", winners={"region_sizes": (3,), "feature_maps": 200}, base_options={})
    assert dict(dropout.fixed) == {"region_sizes": "3", "feature_maps": 200}
    assert zhang_wallace_stage("region", winners={}, base_options={}, region_range=(2, 4)).params[0].values == \
        ("2", "3", "4")
    assert parse_stages(["maps", "region"]) == ("region", "maps") and parse_region_range("1-3") == (1, 3)
    for bad in ("3-1", "0-2", "x"):
        with pytest.raises(CnnappError, match="--region-range"):
            parse_region_range(bad)


@pytest.mark.slow   # make test-slow (CI runs it): make test stays near 8 minutes
def test_the_zhang_wallace_region_stage_runs_and_plots(tmp_path):
    result = run_cli(sweep_args(tmp_path, "zw", "--plan", "zhang-wallace", "--stages", "region",
                                "--region-range", "1-2"))
    sweep_dir = tmp_path / "runs" / "zw" / "sweep"
    s = summary(sweep_dir)
    assert [st["name"] for st in s["stages"]] == ["region"]
    assert sorted(tuple(t["values"]["region_sizes"]) for t in s["trials"]) == [(1,), (2,)]
    assert s["best"]["values"]["region_sizes"] in ([1], [2])
    assert (sweep_dir / "region_size.png").stat().st_size > 1000 and not (sweep_dir / "feature_maps.png").exists()
    assert "--region-sizes" in s["best"]["command"] and "--plan" not in s["best"]["command"], result.output


def test_spec_values_become_keras_tuner_hyperparameters():
    from cnnapp.models import get_model
    from cnnapp.sweep.engine import hyperparameters
    from cnnapp.sweep.plan import Stage
    from cnnapp.sweep.spec import decode, parse_spec
    options = get_model("text_cnn", kind="text").options()
    spec = parse_spec({"method": "grid", "params": {
        "region_sizes": ["3", [3, 4, 5], 2], "feature_maps": [100, 200],
        "dropout": {"min": 0.1, "max": 0.3, "step": 0.1}, "learning_rate": [0.001, 1], "optimizer": "adam"}},
        model_options=options, model_name="text_cnn")
    assert spec.grid_size() == 3 * 2 * 3 * 2 * 1
    hp = hyperparameters(Stage("spec", spec.params))
    kinds = {p.name: type(p).__name__ for p in hp.space}
    assert kinds == {"region_sizes": "Choice", "feature_maps": "Choice", "dropout": "Choice", "learning_rate": "Choice",
                     "optimizer": "Fixed"}
    assert list(hp.space[0].values) == ["3", "3,4,5", "2"] and list(hp.space[3].values) == [0.001, 1.0]
    assert list(hp.space[2].values) == [0.1, 0.2, 0.3]   # max included (keras-tuner's stepped Float: 0.1, 0.2)
    assert decode({"region_sizes": "3,4,5", "dropout": 0.30000000000000004}, {"region_sizes"}) == \
        {"region_sizes": (3, 4, 5), "dropout": 0.3}
    from cnnapp.sweep.spec import split_values
    assert split_values({"dropout": 0.3, "class_weight": "none"}) == ({"dropout": 0.3}, {"class_weight": None})
    assert split_values({"class_weight": "balanced"}) == ({}, {"class_weight": "balanced"})
    log_range = {"min": 1e-4, "max": 1e-2, "sampling": "log"}
    random = parse_spec({"method": "random", "params": {"learning_rate": log_range}},
                        model_options=options, model_name="text_cnn", max_trials=5)
    assert random.max_trials == 5 and random.params[0].kind == "float" and random.params[0].sampling == "log"


def test_a_reloaded_grid_goes_on_where_it_stopped(tmp_path):
    """keras-tuner 1.4.8's GridSearchOracle stops after a reload (keras-team/keras-tuner#1055); cnnapp's does not,
    and a trial that ended is not retried."""
    from keras_tuner.engine.trial import TrialStatus
    from cnnapp.sweep.engine import make_oracle
    from cnnapp.sweep.plan import Stage
    from cnnapp.sweep.spec import Param
    stage = Stage("grid", (Param("feature_maps", "choice", values=(10, 20, 30)),))

    def oracle():
        o = make_oracle(stage, seed=1)
        o._set_project_dir(str(tmp_path), "grid")
        return o
    first = oracle()
    trial = first.create_trial("tuner0")
    first.update_trial(trial.trial_id, {"accuracy": 0.5})
    trial.status = TrialStatus.COMPLETED
    first.end_trial(trial)
    resumed = oracle()
    resumed.reload()
    values = []
    while (t := resumed.create_trial("tuner0")).status == TrialStatus.RUNNING:
        values.append(t.hyperparameters.values["feature_maps"])
        t.status = TrialStatus.COMPLETED
        resumed.update_trial(t.trial_id, {"accuracy": 0.6})
        resumed.end_trial(t)
    assert values == [20, 30]


def test_keras_tuner_protos_load_beside_tensorflow_serving_and_round_trip():
    """keras-tuner's generated protos (v4) and tensorflow-serving-api's share protobuf's default pool."""
    pytest.importorskip("tensorflow_serving")
    from tensorflow_serving.apis import prediction_service_pb2_grpc  # noqa: F401
    import keras_tuner
    from keras_tuner.engine.trial import Trial, TrialStatus
    from keras_tuner.src import protos
    from keras_tuner.src.distribute import oracle_chief, oracle_client  # noqa: F401  (import grpc + the stubs)
    hp = keras_tuner.HyperParameters()
    hp.Choice("region_sizes", ["3", "3,4,5"])
    trial = Trial(hp, trial_id="7", status=TrialStatus.RUNNING)
    wire = protos.get_service().CreateTrialResponse(trial=trial.to_proto()).SerializeToString()
    back = Trial.from_proto(protos.get_service().CreateTrialResponse.FromString(wire).trial)
    assert (back.trial_id, back.status, back.hyperparameters.values) == ("7", "RUNNING", {"region_sizes": "3"})
