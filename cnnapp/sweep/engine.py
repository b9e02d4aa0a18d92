"""The sweep's engine is keras-tuner: its oracles choose the values, keep the trial records
(`<stage>/trial_*/trial.json`, `oracle.json`) and resume a project; its gRPC service lets one chief
oracle hand trials to several worker processes.

What cnnapp adds, and why:
- `SweepTuner` runs a trial through `cnnapp.training.run.run` (a callable it is given), not a
  keras-tuner hypermodel; a trial that raises is recorded FAILED with a one-line reason and the
  search goes on (`max_consecutive_failed_trials` is effectively off).
- Resuming (`ResumableOracle`, `GridOracle`): keras-tuner 1.4.8's GridSearchOracle keeps its frontier
  (`_ordered_ids`, `_populate_next`) only in memory, so a reloaded grid project stops at once without
  running the combinations it has not tried, or fails with a KeyError after a retried trial
  (keras-team/keras-tuner#1055); it is rebuilt from the reloaded trials here. keras-tuner also saves
  the oracle before it drops an ended trial from `ongoing_trials` (a resumed chief ran its last trial
  again) and writes its JSON in place (a kill mid-write left a truncated oracle.json).
- A staged plan runs one keras-tuner search per stage. Under a chief, one gRPC server serves every
  stage in turn (`StageServicer`): a worker asks for trials with its id tagged by the stage
  (`worker0|region`), and the server answers IDLE to a stage it has not started and STOPPED to one
  it has finished, so workers and chief stay in step. Its loop polls every 0.2 s instead of
  keras-tuner's 20 s, and a worker told IDLE waits 0.5 s before asking again (keras-tuner's own
  loop asks again at once).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from concurrent import futures

import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner
from keras_tuner.engine.trial import Trial, TrialStatus

from cnnapp.errors import CnnappError
from cnnapp.sweep.plan import Stage
from cnnapp.sweep.spec import Param, decode

log = logging.getLogger(__name__)
OBJECTIVE = keras_tuner.Objective("accuracy", direction="max")
NEVER_STOP = 10**9          # max_consecutive_failed_trials: a failed trial never ends the sweep
IDLE_WAIT_SECONDS = 0.5
POLL_SECONDS = 0.2
TAG = "|"                   # tuner id | stage name


def hyperparameters(stage: Stage) -> keras_tuner.HyperParameters:
    """The stage's search space: its earlier winners as Fixed, its params as Choice (lists, and ranges with a
    step), Int or Float (ranges without one)."""
    hp = keras_tuner.HyperParameters()
    for name, value in stage.fixed:
        hp.Fixed(name, value)
    for p in stage.params:
        add_param(hp, p)
    return hp


def add_param(hp: keras_tuner.HyperParameters, p: Param) -> None:
    if p.kind == "choice":
        hp.Choice(p.name, list(p.values))
    elif p.kind == "fixed":
        hp.Fixed(p.name, p.values[0])
    elif p.step is not None:   # keras-tuner's stepped Float drops its max to rounding: list the values
        hp.Choice(p.name, list(p.stepped_values()))
    elif p.kind == "int":
        hp.Int(p.name, int(p.min), int(p.max), sampling=p.sampling)
    else:
        hp.Float(p.name, float(p.min), float(p.max), sampling=p.sampling)


def write_json(path, state) -> None:
    """keras-tuner writes its JSON in place: a sweep killed mid-write would leave a truncated oracle.json
    that no rerun can reload. Written whole to a temporary file and renamed instead."""
    from cnnapp.training.callbacks import write_atomically
    write_atomically(path, json.dumps(state).encode())


class ResumableOracle:
    """Oracle mixin for resuming: oracle.json and every trial.json are written atomically, and an ended
    trial is never run again.

    keras-tuner's `end_trial` saves the oracle before it drops the trial from `ongoing_trials`, and a
    reload sends every "ongoing" trial to the retry queue: a chief that stops after its last trial (it
    saves nothing more) would run that finished trial again when resumed. Saved again after the end
    here, and a reload retries only trials whose own record has not ended.
    """

    def save(self):
        write_json(self._get_oracle_fname(), self.get_state())

    def _save_trial(self, trial):
        write_json(os.path.join(self._get_trial_dir(trial.trial_id), "trial.json"), trial.get_state())

    @keras_tuner.synchronized
    def end_trial(self, trial):
        super().end_trial(trial)
        self.save()

    def reload(self):
        super().reload()
        ended = (TrialStatus.COMPLETED, TrialStatus.FAILED)
        self._retry_queue = [i for i in self._retry_queue if self.trials[i].status not in ended]


class RandomOracle(ResumableOracle, keras_tuner.oracles.RandomSearchOracle):
    """RandomSearchOracle with atomic saves (its sampling state, `_seed_state`, is saved and resumes)."""


class GridOracle(ResumableOracle, keras_tuner.oracles.GridSearchOracle):
    """GridSearchOracle that resumes (its frontier is rebuilt from the trials it reloads), saved atomically."""

    def set_state(self, state):
        super().set_state(state)
        values = {i: self.trials[i].hyperparameters.values for i in self.start_order if i in self.trials}
        order = sorted(values, key=functools.cmp_to_key(lambda a, b: self._compare(values[a], values[b])))
        self._ordered_ids = type(self._ordered_ids)()
        for trial_id in order:
            self._ordered_ids.insert(trial_id)
        self._populate_next = list(order)   # each one's next combination is tried unless already done


def make_oracle(stage: Stage, *, seed: int):
    """A grid runs every combination unless `max_trials` stops it first (keras-tuner numbers the trials
    with the digits of max_trials: a grid of 10 has trials 00..09); a random search needs max_trials."""
    max_trials = stage.max_trials or (stage.grid_size() if stage.method == "grid" else None)
    kwargs = dict(objective=OBJECTIVE, max_trials=max_trials, hyperparameters=hyperparameters(stage),
                  seed=seed, max_consecutive_failed_trials=NEVER_STOP)
    if stage.method == "random":
        return RandomOracle(**kwargs)
    return GridOracle(**kwargs)


def worker_oracle():
    """A worker's own oracle: keras-tuner proxies it to the chief, so it only lends its objective."""
    return keras_tuner.Oracle(objective=OBJECTIVE)


def one_line(error: BaseException, limit: int = 300) -> str:
    """A failure's reason in one line: a CnnappError as it is, anything else with its type."""
    from cnnapp.errors import tf_error_reason
    if isinstance(error, CnnappError):
        text = str(error)
    else:
        text = f"{type(error).__name__}: {tf_error_reason(error)}"
    return " ".join(text.split())[:limit]


class SweepTuner(BaseTuner):
    """A keras-tuner tuner whose trial is `trial_fn(stage, trial_id, values) -> metrics` (no hypermodel).

    `values` are the trial's decoded values (tuples for int lists); the metrics are floats with
    `accuracy`, the objective. A trial that raises is FAILED with a one-line reason (trial.message).
    """

    def __init__(self, oracle, *, directory, stage: str, trial_fn, int_lists=frozenset()):
        super().__init__(oracle, hypermodel=None, directory=str(directory), project_name=stage, overwrite=False)
        self.stage, self.trial_fn, self.int_lists = stage, trial_fn, frozenset(int_lists)
        self._failure: str | None = None

    def save(self):
        if not self._is_worker():
            self.oracle.save()
        write_json(self._get_tuner_fname(), self.get_state())

    @property
    def is_worker(self) -> bool:
        """Whether keras-tuner proxies this tuner's oracle to a chief (KERASTUNER_* names a worker)."""
        return self._is_worker()

    def search(self):
        """keras-tuner's loop, with the stage tag on each request and a pause when the oracle is busy."""
        self.on_search_begin()
        while True:
            self.pre_create_trial()
            trial = self.oracle.create_trial(f"{self.tuner_id}{TAG}{self.stage}")
            if trial.status == TrialStatus.STOPPED:
                break
            if trial.status == TrialStatus.IDLE:   # other trials must end first (grid), or the stage has not begun
                time.sleep(IDLE_WAIT_SECONDS)
                continue
            self.on_trial_begin(trial)
            self._failure = None
            self._try_run_and_update_trial(trial)
            if self._failure is not None:
                trial.message = self._failure   # keras-tuner would keep the whole traceback
            self.on_trial_end(trial)
        self.on_search_end()

    def run_trial(self, trial, *args, **kwargs):
        values = decode(trial.hyperparameters.values, self.int_lists)
        try:
            return self.trial_fn(self.stage, trial.trial_id, values)
        except Exception as e:   # the sweep goes on; a KeyboardInterrupt still stops it
            self._failure = one_line(e)
            if not isinstance(e, CnnappError):
                log.debug("trial %s failed", trial.trial_id, exc_info=True)
            raise keras_tuner.errors.FailedTrialError(self._failure) from e


def stage_of(tuner_id: str) -> tuple[str, str | None]:
    base, sep, stage = tuner_id.partition(TAG)
    return base, (stage if sep else None)


class StageServicer:
    """keras-tuner's OracleServicer for a sequence of stages: one server, the current stage's oracle."""

    def __init__(self, stage_names: list[str]):
        from keras_tuner.src.distribute.oracle_chief import OracleServicer   # gRPC protos: imported on use
        self._servicer = OracleServicer(None)
        self.stage_names = list(stage_names)
        self.stage: str | None = None
        self.finished = False                     # every stage done: all requests get STOPPED
        self.seen: set[str] = set()               # tuner ids that asked for trials
        self.released: set[str] = set()           # tuner ids told STOPPED after the last stage
        self.lock = threading.Lock()

    def switch(self, oracle, stage: str) -> None:
        with self.lock:
            self._servicer.oracle, self.stage = oracle, stage
            self._servicer.stop_triggered = False

    def finish(self) -> None:
        with self.lock:
            self.finished = True

    @property
    def oracle(self):
        return self._servicer.oracle

    def stage_done(self) -> bool:
        """The current stage handed out its last trial and every trial has ended."""
        oracle = self.oracle
        return self._servicer.stop_triggered and not oracle.ongoing_trials and not oracle.tuner_ids

    def _answer(self, status) -> object:
        from keras_tuner.src import protos
        return protos.get_service().CreateTrialResponse(
            trial=Trial(keras_tuner.HyperParameters(), status=status).to_proto())

    def CreateTrial(self, request, context):
        base, stage = stage_of(request.tuner_id)
        with self.lock:
            self.seen.add(base)
            if self.finished:
                self.released.add(base)
                return self._answer(TrialStatus.STOPPED)
            current = self.stage_names.index(self.stage) if self.stage in self.stage_names else -1
            asked = self.stage_names.index(stage) if stage in self.stage_names else current
            if self.oracle is None or asked > current:
                return self._answer(TrialStatus.IDLE)
            if asked < current:
                return self._answer(TrialStatus.STOPPED)
        return self._servicer.CreateTrial(request, context)

    def __getattr__(self, name):   # GetSpace, UpdateTrial, EndTrial, GetTrial, ...: the current oracle's
        return getattr(self._servicer, name)


class OracleServer:
    """The chief's gRPC server (keras-tuner's service) on `address`, serving stage after stage."""

    def __init__(self, address: str, stage_names: list[str]):
        import grpc
        from keras_tuner.src import protos
        self.servicer = StageServicer(stage_names)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        protos.get_service_grpc().add_OracleServicer_to_server(self.servicer, self.server)
        try:
            bound = self.server.add_insecure_port(address)
        except RuntimeError:
            bound = 0
        if not bound:
            raise CnnappError(f"KERASTUNER_ORACLE_IP/PORT: cannot listen on {address} (in use, or not this "
                              f"machine's address). Received: {address}")
        self.server.start()
        log.info("chief oracle listening on %s", address)

    def serve_stage(self, oracle, stage: str) -> None:
        """Hand out the stage's trials until the oracle stops and every trial has ended."""
        self.servicer.switch(oracle, stage)
        while not self.servicer.stage_done():
            time.sleep(POLL_SECONDS)   # a server's poll interval, not a wait for a result

    def close(self, *, linger_seconds: float = 10.0) -> None:
        """Tell every worker that asks that the sweep is over (until all seen have heard it), then stop."""
        self.servicer.finish()
        deadline = time.monotonic() + linger_seconds
        while time.monotonic() < deadline and not self.servicer.seen <= self.servicer.released:
            time.sleep(POLL_SECONDS)
        self.server.stop(grace=1).wait()
