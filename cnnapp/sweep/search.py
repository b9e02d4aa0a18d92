"""`cnnapp sweep`: prepare a sweep (check everything, read the data once), run its stages on keras-tuner
(here, or as the chief or a worker of a distributed sweep), report it, and train the best configuration.

    plan = prepare(task, train=TrainConfig(epochs=2), model=ModelChoice("text_cnn", {"feature_maps": 4}),
                   spec="space.json")                         # or spec=None: Zhang & Wallace's stages
    outcome = run_sweep(plan)                                 # sweep.json, sweep.md, sweep.csv, plots
    export_best(plan, outcome.best)                           # the best configuration, trained and exported

A trial is one `cnnapp.training.run.run` with export off, in `<sweep_dir>/trials/<stage>-<id>/`. Its
objective is the dev (validation) accuracy with fixed splits, or the CV mean under `cv=K`; the test
accuracy is recorded beside it, never chosen on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from cnnapp import layout
from cnnapp.config import ModelChoice, TrainConfig
from cnnapp.errors import CnnappError
from cnnapp.models import get_model
from cnnapp.sweep import report
from cnnapp.sweep.plan import ZW_STAGES, Stage, parse_region_range, parse_stages, zhang_wallace_stage
from cnnapp.sweep.spec import SweepSpec, decode, parse_spec, read_spec, split_values

log = logging.getLogger(__name__)
FINGERPRINT_FILE = "fingerprint.json"
MARKER_FILE = "sweep_settings.json"       # marks a folder as a sweep's (for --fresh)
RECORD_FILE = "sweep_trial.json"          # cnnapp's own record of a trial, beside its run
# Settings that do not change what a trial computes; everything else of TrainConfig is in the fingerprint.
UNFINGERPRINTED = ("name", "run_dir", "export_base", "export", "fresh", "verbose", "cluster", "dump_weights_dir",
                   "export_fold", "accuracy_levels", "cache", "memory_budget")
PATH_KEYS = ("data", "dataset", "data_dir", "dev", "test", "embeddings")   # their content is hashed instead


@dataclass(frozen=True)
class Participant:
    """This process's part in a distributed sweep: keras-tuner's KERASTUNER_TUNER_ID / _ORACLE_IP / _ORACLE_PORT."""

    tuner_id: str
    oracle_ip: str
    oracle_port: int

    @property
    def is_chief(self) -> bool:
        return "chief" in self.tuner_id      # keras-tuner's own rule

    @property
    def address(self) -> str:
        return f"{self.oracle_ip}:{self.oracle_port}"


def participant_from(environ) -> Participant | None:
    """The KERASTUNER_* variables of `environ` (a mapping the CLI passes), or None when absent."""
    ip = environ.get("KERASTUNER_ORACLE_IP")
    if not ip:
        return None
    tuner_id, port = environ.get("KERASTUNER_TUNER_ID"), environ.get("KERASTUNER_ORACLE_PORT")
    if not tuner_id or not str(port or "").isdigit():
        raise CnnappError("KERASTUNER_TUNER_ID/KERASTUNER_ORACLE_PORT: a distributed sweep needs all three of "
                          "KERASTUNER_TUNER_ID (chief, or a worker's id), KERASTUNER_ORACLE_IP and a numeric "
                          f"KERASTUNER_ORACLE_PORT. Received: tuner_id={tuner_id!r}, port={port!r}")
    return Participant(tuner_id, ip, int(port))


@dataclass
class SweepPlan:
    """A checked sweep: the task with its data read once, the base configs, the stages, the sweep folder."""

    task: object
    train: TrainConfig
    model: ModelChoice
    model_name: str
    sweep_dir: Path
    name: str
    spec: SweepSpec | None
    stage_names: tuple[str, ...]
    region_range: tuple[int, int]
    max_trials: int | None
    int_lists: frozenset
    settings: dict                        # what the fingerprint of every stage holds besides its space


@dataclass
class SweepOutcome:
    sweep_dir: Path
    trials: list[dict] = field(default_factory=list)
    best: dict | None = None
    files: list[Path] = field(default_factory=list)
    stages: list[dict] = field(default_factory=list)


class Preloaded:
    """The task with its data read once: every trial's `run()` gets it without reading files again."""

    def __init__(self, task, data, source):
        self._task, self._loaded = task, (data, source)

    def load(self):
        return self._loaded

    def __getattr__(self, name):
        return getattr(self._task, name)


def prepare(task, *, train: TrainConfig, model: ModelChoice, spec: str | Path | None = None,
            stages=None, region_range: str | tuple = (1, 10), max_trials: int | None = None,
            sweep_dir: str | Path | None = None) -> SweepPlan:
    """Check the sweep before any trial: the model and its base options, the protocol, the spec or the
    plan's stages, the data (read here once) and the sweep folder. Errors are one line."""
    from cnnapp.training.run import check_protocol, check_writable
    spec_model = get_model(model.name, kind=task.kind)
    spec_model.check_options(model.options)
    check_protocol(train)
    if train.ensemble != 1:
        raise CnnappError(f"--ensemble: a sweep trains one model per trial. Received: ensemble={train.ensemble}")
    if train.name is not None:
        layout.check_model_name(train.name)
    options = spec_model.options()
    parsed = None
    if spec is not None:
        if stages:
            raise CnnappError(f"--stages: is for the zhang-wallace plan, not a --spec sweep. "
                              f"Received: {','.join(stages)}")
        parsed = parse_spec(read_spec(spec), model_options=options, model_name=spec_model.name, source=str(spec),
                            max_trials=max_trials)
        stage_names = ("spec",)
    else:
        if task.kind != "text" or spec_model.name != "text_cnn":
            raise CnnappError(f"--spec: the zhang-wallace plan is for the text_cnn sentence model; give a spec file "
                              f"for {spec_model.name}. Received: spec=None")
        stage_names = parse_stages(stages)
    if isinstance(region_range, str):
        region_range = parse_region_range(region_range)
    if hasattr(task, "preflight"):
        task.preflight(batch_size=train.batch_size, model_options={**options, **model.options})
    data, source = task.load()
    if model.name is None and data.info.get("model") and data.info["model"] != spec_model.name:
        # The data's preset model (photo folders: vgg), as `train-image` would train it.
        from cnnapp.training.run import preset_model
        spec_model = preset_model(data.info["model"], task.kind, model.options)
        options = spec_model.options()
        if spec is not None:
            parsed = parse_spec(read_spec(spec), model_options=options, model_name=spec_model.name,
                                source=str(spec), max_trials=max_trials)
    if train.cv is not None and data.has_fixed_splits:
        raise CnnappError("--cv: the data has fixed dev/test splits; cross-validation is for data without them "
                          f"(drop --dev/--test, or drop --cv). Received: cv={train.cv}")
    name = layout.check_model_name(train.name or data.name, arg="--name" if train.name else "--data")
    folder = Path(sweep_dir) if sweep_dir is not None else Path(train.run_dir) / name / "sweep"
    check_writable(folder, "--sweep-dir", folder)
    int_lists = frozenset({k for k, v in options.items() if isinstance(v, tuple)}
                          | {p.name for p in (parsed.params if parsed else ()) if p.int_list})
    describe = {k: v for k, v in task.describe().items() if k not in PATH_KEYS}
    settings = json.loads(json.dumps({
        "data": data_hash(data), "task": {"kind": task.kind, **describe}, "model": spec_model.name,
        "options": model.options,
        # class_weight only when set: a sweep started before it existed still resumes without it
        "train": {k: v for k, v in dataclasses.asdict(train).items()
                  if k not in UNFINGERPRINTED and not (k == "class_weight" and v is None)},
    }, default=str, sort_keys=True))
    # Trials are chosen on their validation score, so it never comes from the test part.
    data.info["selects_on_validation"] = True
    return SweepPlan(task=Preloaded(task, data, source), train=dataclasses.replace(train, name=name),
                     model=model, model_name=spec_model.name, sweep_dir=folder, name=name, spec=parsed,
                     stage_names=stage_names, region_range=region_range, max_trials=max_trials,
                     int_lists=int_lists, settings=settings)


def data_hash(data) -> str:
    """The data's one fingerprint (`RawData.fingerprint`: examples and labels of every part it read)."""
    return data.fingerprint()


def discard(plan: SweepPlan) -> None:
    """--fresh: remove the sweep folder, refusing a non-empty folder that is not a sweep's."""
    folder = plan.sweep_dir
    if not folder.exists():
        return
    if folder.is_dir() and any(folder.iterdir()) and not (folder / MARKER_FILE).exists():
        raise CnnappError(f"--fresh: {folder} is not a sweep folder (no {MARKER_FILE}); not removing it. "
                          f"Received: sweep_dir={folder}")
    log.info("--fresh: removing the sweep in %s", folder)
    shutil.rmtree(folder)


def stage_for(plan: SweepPlan, name: str, winners: dict) -> Stage:
    if plan.spec is not None:
        return Stage(name="spec", params=plan.spec.params, method=plan.spec.method, max_trials=plan.spec.max_trials)
    return zhang_wallace_stage(name, winners=winners, base_options={**get_model(plan.model_name, kind="text").options(),
                                                                    **plan.model.options},
                               region_range=plan.region_range, max_trials=plan.max_trials)


def claim_stage(plan: SweepPlan, stage: Stage) -> None:
    """Refuse a stage folder that holds a sweep of other settings; record this one's otherwise."""
    from cnnapp.training.resume import fingerprint_differences
    now = {"settings": plan.settings, "stage": stage_description(stage)}
    path = plan.sweep_dir / stage.name / FINGERPRINT_FILE
    if path.exists():
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before is not None and before != now:
            diffs = fingerprint_differences(before, now)
            shown = "; ".join(diffs[:3]) + (f"; and {len(diffs) - 3} more" if len(diffs) > 3 else "")
            raise CnnappError(f"--sweep-dir: {path.parent} holds a sweep with other settings ({shown}); rerun it as it "
                              f"was to resume, add --fresh to start over, or choose another --sweep-dir. "
                              f"Received: sweep_dir={plan.sweep_dir}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(now, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def stage_description(stage: Stage) -> dict:
    return json.loads(json.dumps({
        "name": stage.name, "method": stage.method,
        "params": [dataclasses.asdict(p) for p in stage.params], "fixed": dict(stage.fixed)}, default=str))


def run_sweep(plan: SweepPlan, *, participant: Participant | None = None,
              command_for: Callable[[dict], str] | None = None) -> SweepOutcome:
    """Run the plan's stages: here (participant None), as the chief oracle (serves, never trains), or as a
    worker (trains what the chief hands out). The chief and a lone process write the reports."""
    from cnnapp.sweep import engine
    plan.sweep_dir.mkdir(parents=True, exist_ok=True)
    if not (plan.sweep_dir / MARKER_FILE).exists():
        (plan.sweep_dir / MARKER_FILE).write_text(json.dumps(plan.settings, indent=2) + "\n", encoding="utf-8")
    trial_fn = TrialRunner(plan, tuner_id=participant.tuner_id if participant else "tuner0")
    if participant is not None and not participant.is_chief:
        for name in plan.stage_names:
            tuner = engine.SweepTuner(engine.worker_oracle(),
                                      directory=plan.sweep_dir, stage=name, trial_fn=trial_fn,
                                      int_lists=plan.int_lists)
            if not tuner.is_worker:
                raise CnnappError(f"KERASTUNER_TUNER_ID: keras-tuner does not see this process as a worker. "
                                  f"Received: tuner_id={participant.tuner_id}")
            log.info("worker %s: stage %s", participant.tuner_id, name)
            tuner.search()
        return SweepOutcome(sweep_dir=plan.sweep_dir)

    server = engine.OracleServer(participant.address, list(plan.stage_names)) if participant else None
    winners: dict = {}
    stages_run: list[Stage] = []
    try:
        for name in plan.stage_names:
            stage = stage_for(plan, name, winners)
            claim_stage(plan, stage)
            oracle = engine.make_oracle(stage, seed=plan.train.seed)
            tuner = engine.SweepTuner(oracle, directory=plan.sweep_dir, stage=stage.name, trial_fn=trial_fn,
                                      int_lists=plan.int_lists)
            tuner.oracle.verbose = 0   # cnnapp logs one line per trial instead of keras-tuner's tables
            stages_run.append(stage)
            log.info("stage %s: %s%s", stage.name, ", ".join(f"{p.name} {p.describe()}" for p in stage.params),
                     f" (fixed: {', '.join(f'{k}={v}' for k, v in stage.fixed)})" if stage.fixed else "")
            if server is None:
                tuner.search()
            else:
                tuner.save()
                server.serve_stage(tuner.oracle, stage.name)
            best = [t for t in tuner.oracle.get_best_trials(1) if t.status == "COMPLETED"]
            if not best:
                trials = report.write(plan, stages_run, command_for=command_for)["trials"]
                reason = next((t["reason"] for t in trials if t.get("reason")), None) or "see the log"
                raise CnnappError(f"stage {stage.name}: no trial completed (e.g. {reason}); "
                                  f"{plan.sweep_dir / 'sweep.md'} lists them. Received: {len(trials)} trial(s)")
            decoded = decode(best[0].hyperparameters.values, plan.int_lists)
            winners.update({p: decoded[p] for p in stage.varied})
    finally:
        if server is not None:
            server.close()
    return outcome_of(report.write(plan, stages_run, command_for=command_for), plan.sweep_dir)


def outcome_of(summary: dict, sweep_dir: Path) -> SweepOutcome:
    return SweepOutcome(sweep_dir=sweep_dir, trials=summary["trials"], best=summary.get("best"),
                        files=[Path(p) for p in summary.get("files", [])], stages=summary.get("stages", []))


def read_outcome(sweep_dir: str | Path) -> SweepOutcome:
    """The outcome a chief wrote (`sweep.json`), for the launcher of a local distributed sweep."""
    path = Path(sweep_dir) / "sweep.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CnnappError(f"--workers: the chief wrote no readable {path} ({e}). "
                          f"Received: sweep_dir={sweep_dir}") from None
    return outcome_of(summary, Path(sweep_dir))


class TrialRunner:
    """One trial: the base configs with the trial's values, through `run()` with export off."""

    def __init__(self, plan: SweepPlan, *, tuner_id: str):
        self.plan, self.tuner_id = plan, tuner_id

    def configs(self, values: dict, *, name: str, run_dir: str | None = None) -> tuple[TrainConfig, ModelChoice]:
        model_values, train_values = split_values(values)
        train = dataclasses.replace(self.plan.train, **train_values, name=name,
                                    run_dir=run_dir or self.plan.train.run_dir)
        return train, ModelChoice(self.plan.model_name, {**self.plan.model.options, **model_values})

    def __call__(self, stage: str, trial_id: str, values: dict) -> dict:
        import keras
        from cnnapp.training.run import run
        name = f"{stage}-{trial_id}"
        train, model = self.configs(values, name=name, run_dir=str(self.plan.sweep_dir / "trials"))
        train = dataclasses.replace(train, export=False, fresh=False, verbose=0)
        record_path = self.plan.sweep_dir / "trials" / name / RECORD_FILE
        record = read_json(record_path) or {}
        record = {"stage": stage, "trial_id": trial_id, "values": report.plain(values), "tuner_id": self.tuner_id,
                  "attempts": int(record.get("attempts", 0)) + 1, "status": "RUNNING",
                  "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        write_record(record_path, record)
        shown = ", ".join(f"{k}={report.show(v)}" for k, v in values.items())
        log.info("trial %s (%s): %s", name, self.tuner_id, shown)
        keras.backend.clear_session()   # each trial builds its model in a fresh graph
        start = time.perf_counter()
        try:
            outcome = run(self.plan.task, train=train, model=model)
        except Exception as e:
            from cnnapp.sweep.engine import one_line
            write_record(record_path, {**record, "status": "FAILED", "reason": one_line(e),
                                       "seconds": round(time.perf_counter() - start, 2)})
            log.warning("trial %s failed: %s", name, one_line(e))
            raise
        metrics = trial_metrics(outcome, seconds=time.perf_counter() - start)
        write_record(record_path, {**record, "status": "COMPLETED", **metrics})
        log.info("trial %s: accuracy %.4f%s, %.1f s", name, metrics["accuracy"],
                 " (CV mean)" if "min" in metrics else " (dev)", metrics["seconds"])
        return metrics


def trial_metrics(outcome, *, seconds: float) -> dict:
    """The trial's numbers for keras-tuner (floats): `accuracy` is the objective (CV mean, else dev)."""
    if outcome.cv:
        cv = outcome.cv
        epochs = [f["epochs_run"] for f in cv["folds"]]
        return {"accuracy": float(cv["mean"]), "min": float(cv["min"]), "max": float(cv["max"]),
                "epochs": float(np.mean(epochs)), "seconds": round(float(seconds), 2)}
    m = outcome.result.metrics
    out = {"accuracy": float(m["best_val_accuracy"]), "epochs": float(m["epochs_run"]),
           "seconds": round(float(seconds), 2)}
    if m["evaluated_on"] == "test":
        out["test_accuracy"] = float(m["test"]["accuracy"])
    return out


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_record(path: Path, record: dict) -> None:
    from cnnapp.training.callbacks import write_atomically
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, (json.dumps(record, indent=2) + "\n").encode())


def export_best(plan: SweepPlan, best: dict | None):
    """Train the best configuration through the normal run, export on, under the plan's name."""
    from cnnapp.training.run import run
    if not best:
        raise CnnappError(f"--export-best: the sweep has no completed trial. Received: sweep_dir={plan.sweep_dir}")
    values = report.unplain(best["values"])
    train, model = TrialRunner(plan, tuner_id="export").configs(values, name=plan.name)
    log.info("training the best configuration (%s) to export it as %s", best["trial"], plan.name)
    return run(plan.task, train=dataclasses.replace(train, export=True), model=model)


__all__ = ["ZW_STAGES", "Participant", "SweepOutcome", "SweepPlan", "discard", "export_best", "participant_from",
           "prepare", "read_outcome", "run_sweep"]
