"""Versions of served models: discover, load, warm up, switch in, unload — as TF Serving's manager does.

`ModelManager.poll()` reads each model's base path, loads the versions its policy aspires to,
warms each up with a real signature call, and only then swaps it into the table requests read
from. Requests hold a reference to the `Servable` they resolved, so a switch never drops one in
flight. What can go wrong with a new version is reported in the status (state END, its error)
while the versions already loaded keep serving:
- a failed load (a `cp -r` caught half-way: `saved_model.pb` before `variables/`) is retried on a
  later poll as soon as the folder changes, and otherwise up to `max_num_load_retries` times,
  `load_retry_interval_micros` apart (TF Serving's flags);
- a version whose signatures take other inputs than the serving version's (a text model copied
  in as a new version of an image model) is refused: clients of the model would break.
With `ServerConfig.watch_base` (a folder of several models), models exported there after start are
served from the next poll on.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cnnapp import layout
from cnnapp.errors import tf_error_reason
from cnnapp.serving.config import ModelConfig, ServerConfig
from cnnapp.serving.errors import NotFound
from cnnapp.serving.servable import Servable, describe

log = logging.getLogger(__name__)


@dataclass
class VersionState:
    state: str                   # START, LOADING, AVAILABLE, UNLOADING, END (TF Serving's states)
    error: str = ""
    error_code: str = "OK"       # tensorflow.error.Code name, as TF Serving's status reports it
    stamp: tuple = ()            # the folder's fingerprint when this state was reached
    attempts: int = 0            # failed loads of this folder content so far
    retry_at: float = 0.0        # time.monotonic() of the next retry (inf: not retried unchanged)


def folder_stamp(path: Path) -> tuple:
    """(files, bytes, newest mtime) of a version folder: changes when a copy makes progress."""
    count = size = newest = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                st = os.stat(os.path.join(root, f))
            except OSError:
                continue
            count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return count, size, newest


class ModelManager:
    """>>> mgr = ModelManager(config); mgr.poll(); mgr.resolve("digits", None, None).call(...)"""

    def __init__(self, config: ServerConfig, metrics=None):
        self.config, self.metrics = config, metrics
        self._models: dict[str, ModelConfig] = {}
        self._serving: dict[str, dict[int, Servable]] = {}
        self._states: dict[str, dict[int, VersionState]] = {}
        for m in config.models:
            self._add_model(m)
        self._lock = threading.Lock()            # guards the tables requests read
        self._poll_lock = threading.Lock()       # one poll at a time (poller thread or a test)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._config_read_at = time.monotonic()
        self._no_versions: set[str] = set()      # models warned about (once) for having no versions

    def _add_model(self, model: ModelConfig) -> None:
        self._serving[model.name] = {}
        self._states[model.name] = {}
        self._models[model.name] = model         # last: readers check _models first

    # ------------------------------------------------------------------ requests
    def knows(self, name: str) -> bool:
        return name in self._models

    def _label_target(self, name: str, label: str) -> int:
        """The version a label points at; NotFound (naming the model's labels) for an unknown one."""
        labels = dict(self._models[name].labels)
        if label not in labels:
            raise NotFound(f"Unrecognized servable version label: {label} "
                           f"(model {name} has labels {sorted(labels)})")
        return labels[label]

    def resolve(self, name: str, version: str | int | None, label: str | None) -> Servable:
        """The servable a request names; NotFound in TF Serving's words otherwise. A version is only
        ever ASCII digits (layout.parse_version): '²', '１' or '١' are not versions."""
        with self._lock:
            serving = self._serving.get(name)
            if serving is None:
                raise NotFound(f"Servable not found for request: Latest({name})")
            if label is not None:
                wanted = self._label_target(name, label)
                found = serving.get(wanted)
                if found is None:
                    raise NotFound(f"Servable not found for request: Specific({name}, {wanted}) "
                                   f"(label {label})")
                return found
            if version is not None:
                number = version if isinstance(version, int) else layout.parse_version(version)
                found = serving.get(number) if number is not None else None
                if found is None:
                    raise NotFound(f"Servable not found for request: Specific({name}, {version})")
                return found
            if not serving:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return serving[max(serving)]

    def states_of(self, name: str) -> list[tuple[int, VersionState]]:
        """Every version state of a model (empty when none was found yet)."""
        with self._lock:
            return sorted(self._states.get(name, {}).items())

    def base_path_of(self, name: str) -> Path:
        return self._models[name].base_path

    def version_states(self, name: str, version: str | int | None = None,
                       label: str | None = None) -> list[tuple[int, VersionState]]:
        with self._lock:
            states = self._states.get(name)
            if states is None:
                raise NotFound(f"Could not find any versions of model {name}")
            if label is not None:
                version = self._label_target(name, label)
            if version is not None:
                v = version if isinstance(version, int) else layout.parse_version(version)
                if v not in states:
                    raise NotFound(f"Could not find version {version} of model {name}")
                items = [(v, states[v])]
            else:
                items = sorted(states.items())
        if not items:
            raise NotFound(f"Could not find any versions of model {name}")
        return items

    def status(self, name: str, version: str | int | None = None, label: str | None = None) -> dict:
        return {"model_version_status": [
            {"version": str(v), "state": s.state, "status": {"error_code": s.error_code, "error_message": s.error}}
            for v, s in self.version_states(name, version, label)]}

    def model_names(self) -> list[str]:
        return sorted(self._models)

    def available(self) -> dict[str, list[int]]:
        with self._lock:
            return {n: sorted(s) for n, s in self._serving.items()}

    # ------------------------------------------------------------------ versions
    def poll(self) -> None:
        """Load what each policy aspires to, warm up, switch in; unload the rest. Safe to call any time."""
        with self._poll_lock:
            self._reread_model_config()
            if self.config.watch_base is not None:
                for name, folder in layout.model_dirs(self.config.watch_base).items():
                    if name not in self._models:
                        log.info("new model %s found in %s", name, self.config.watch_base)
                        with self._lock:
                            self._add_model(ModelConfig(name, folder))
            for model in list(self._models.values()):
                self._poll_model(model)

    def _reread_model_config(self) -> None:
        """--model_config_file_poll_wait_seconds: serve what the file says now (a file that does not
        parse is logged and the models keep serving, as in TF Serving)."""
        from cnnapp.errors import CnnappError
        from cnnapp.serving.config import load_model_config_file
        every = self.config.model_config_file_poll_wait_seconds
        if self.config.model_config_file is None or every <= 0 or time.monotonic() - self._config_read_at < every:
            return
        self._config_read_at = time.monotonic()
        try:
            models = {m.name: m for m in load_model_config_file(self.config.model_config_file)}
        except CnnappError as e:
            log.error("%s not reloaded, the models keep serving: %s", self.config.model_config_file, e)
            return
        with self._lock:
            for name in list(self._models):
                moved = name in models and models[name].base_path != self._models[name].base_path
                if name in models and not moved:
                    if models[name] != self._models[name]:
                        log.info("model %s: policy or labels changed in %s", name, self.config.model_config_file)
                        self._models[name] = models[name]
                    continue
                del self._models[name]
                for servable in self._serving.pop(name).values():
                    servable.close()
                del self._states[name]
                self._no_versions.discard(name)
                log.info("model %s %s in %s: unloaded", name, "moved to another base_path" if moved else "removed",
                         self.config.model_config_file)
            for name, model in models.items():
                if name not in self._models:
                    log.info("model %s added to %s", name, self.config.model_config_file)
                    self._add_model(model)

    @staticmethod
    def _should_load(st: VersionState | None, stamp: tuple, now: float) -> bool:
        """For an aspired version not being served: load it unless it failed and nothing changed."""
        if st is None or not st.error:
            return True
        if stamp != st.stamp:
            return True                           # the folder changed since it failed: try again
        return now >= st.retry_at

    def _poll_model(self, model: ModelConfig) -> None:
        on_disk = layout.version_dirs(model.base_path)
        if not on_disk and model.name not in self._no_versions:
            # TF Serving's warning: the others serve, and the base path is polled for this one.
            self._no_versions.add(model.name)
            every = self.config.poll_seconds
            log.warning("model %s: no versions found under base path %s (yet); %s", model.name, model.base_path,
                        f"polled every {every:g} s (--file_system_poll_wait_seconds)" if every > 0
                        else "not polled again (--file_system_poll_wait_seconds 0)")
        elif on_disk:
            self._no_versions.discard(model.name)
        aspired = model.policy.aspired(list(on_disk))
        serving = self._serving[model.name]
        for v in aspired:
            if v not in serving:
                self._load(model, v, on_disk[v])
        if not serving and not any(v in serving for v in aspired):
            # Nothing serves (a broken newest version at start): fall back to the newest older
            # version that loads, rather than leave the model unavailable (cnnapp's extension).
            for v in sorted(set(on_disk) - set(aspired), reverse=True):
                if self._load(model, v, on_disk[v]):
                    log.warning("%s: serving version %d until a newer one loads", model.name, v)
                    break
        self._unload(model, aspired, on_disk)

    def _load(self, model: ModelConfig, v: int, path: Path) -> bool:
        """Load, check and switch in one version; False (its state says why) when it does not serve."""
        states = self._states[model.name]
        serving = self._serving[model.name]
        st = states.get(v)
        stamp = folder_stamp(path)
        now = time.monotonic()
        if not self._should_load(st, stamp, now):
            return False
        attempts = st.attempts + 1 if st is not None and st.error and st.stamp == stamp else 1
        with self._lock:
            states[v] = VersionState("LOADING", stamp=stamp)
        log.info("loading %s version %d from %s", model.name, v, path)
        try:
            servable = Servable(model.name, v, path, self.config.batching, self.metrics,
                                chunk_examples=self.config.chunk_examples, tags=self.config.saved_model_tags)
        except Exception as e:  # noqa: BLE001 - any load failure is reported, the server keeps going
            reason = tf_error_reason(e) if hasattr(e, "message") else f"{type(e).__name__}: {str(e)[:200]}"
            retries_left = attempts <= self.config.max_num_load_retries
            retry_at = now + self.config.load_retry_interval_micros / 1e6 if retries_left else float("inf")
            log.error("%s version %d failed to load (attempt %d; retried %s): %s", model.name, v, attempts,
                      "when its folder changes" + (" or after the retry interval" if retries_left else ""),
                      reason)
            with self._lock:
                states[v] = VersionState("END", error=f"Failed to load {path}: {reason}",
                                         error_code="UNKNOWN", stamp=stamp, attempts=attempts, retry_at=retry_at)
            return False
        current = serving[max(serving)] if serving else None
        if current is not None and servable.interface() != current.interface():
            servable.close()
            reason = (f"Refused {path}: its signatures take other inputs than version {current.version}, "
                      f"which keeps serving (new: {describe(servable)}; serving: {describe(current)}). "
                      f"Export it under another model name, or restart the server to switch kinds.")
            log.error("%s version %d: %s", model.name, v, reason)
            with self._lock:
                states[v] = VersionState("END", error=reason, error_code="FAILED_PRECONDITION", stamp=stamp,
                                         attempts=attempts, retry_at=float("inf"))
            return False
        try:
            if self.config.enable_model_warmup:
                servable.warm_up(self.config.num_request_iterations_for_warmup)
        except Exception:  # noqa: BLE001 - a warm-up is an optimisation, never a reason not to serve
            log.exception("warm-up of %s version %d failed", model.name, v)
        with self._lock:
            serving[v] = servable
            states[v] = VersionState("AVAILABLE", stamp=stamp)
        log.info("serving %s version %d", model.name, v)
        return True

    def _unload(self, model: ModelConfig, aspired: list[int], on_disk: dict) -> None:
        # Unload versions no longer aspired, but never the last good one while its successor has
        # not loaded: a failed new version must not leave the model unavailable.
        states = self._states[model.name]
        serving = self._serving[model.name]
        loaded_aspired = [v for v in aspired if v in serving]
        with self._lock:
            for v in list(serving):
                if v in aspired or (not loaded_aspired and v == max(serving)):
                    continue
                servable = serving.pop(v)
                states[v] = VersionState("END")
                servable.close()
                log.info("unloaded %s version %d", model.name, v)
            for v in list(states):
                if v not in on_disk and v not in serving and states[v].state != "END":
                    states[v] = VersionState("END")

    def start_polling(self) -> None:
        periods = [s for s in (self.config.poll_seconds, self.config.model_config_file_poll_wait_seconds
                               if self.config.model_config_file else 0) if s > 0]
        if not periods or self._thread is not None:
            return
        self._stop.clear()

        def loop():
            while not self._stop.wait(min(periods)):
                try:
                    self.poll()
                except Exception:  # noqa: BLE001 - the poller must outlive a bad file system moment
                    log.exception("polling the model base paths failed")
        self._thread = threading.Thread(target=loop, name="model-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            for serving in self._serving.values():
                for s in serving.values():
                    s.close()
