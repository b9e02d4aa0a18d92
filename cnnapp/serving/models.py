"""Versions of served models: discover, load, warm up, switch in, unload — as TF Serving's manager does.

`ModelManager.poll()` reads each model's base path, loads the versions its policy aspires to,
warms each up with a real signature call, and only then swaps it into the table requests read
from. Requests hold a reference to the `Servable` they resolved, so a switch never drops one in
flight. A version that fails to load is reported in the status (state END, its error) while the
versions already loaded keep serving.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnapp import layout
from cnnapp.errors import tf_error_reason
from cnnapp.serving.batching import Batcher
from cnnapp.serving.codec import DTYPE_NAMES, InputSpec, NotFound, ServingError
from cnnapp.serving.config import ModelConfig, ServerConfig

log = logging.getLogger(__name__)


def _version_dirs(base: Path) -> dict[int, Path]:
    # cnnapp's half-written exports are hidden `.tmp-*` folders, so they are never picked up.
    return layout.version_dirs(base)


class Servable:
    """One loaded version: its signatures (as InputSpecs) and, with batching on, its Batcher."""

    def __init__(self, name: str, version: int, path: Path, batching=None, metrics=None):
        import tensorflow as tf
        self.name, self.version, self.path = name, version, path
        self.loaded = tf.saved_model.load(str(path))
        self.signatures = dict(self.loaded.signatures)
        if not self.signatures:
            raise ValueError("the SavedModel has no signatures")
        self.inputs: dict[str, dict[str, InputSpec]] = {}
        for sig_name, fn in self.signatures.items():
            specs = fn.structured_input_signature[1]
            self.inputs[sig_name] = {
                n: InputSpec(n, s.dtype.name, None if s.shape.rank is None else tuple(s.shape.as_list()))
                for n, s in sorted(specs.items())}
        self.cnnapp = layout.read_metadata(path)
        self.batcher = (Batcher(self.call, batching, name=f"{name}-{version}",
                                on_batch=(lambda n: metrics.batch(name, n)) if metrics else None)
                        if batching else None)

    def call(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One signature call on numpy inputs; bad input data (an undecodable image) -> 400."""
        import tensorflow as tf
        fn = self.signatures[signature]
        specs = self.inputs[signature]
        try:
            tensors = {n: tf.constant(a, dtype=tf.string if specs[n].dtype == "string" else specs[n].dtype)
                       for n, a in inputs.items()}
            out = fn(**tensors)
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise ServingError(f"{tf_error_reason(e)} (signature {signature!r} of {self.name} "
                               f"version {self.version})") from None
        return {k: v.numpy() for k, v in out.items()}

    def signature(self, signature_name: str | None) -> tuple[str, dict[str, InputSpec]]:
        name = signature_name or "serving_default"
        if not isinstance(name, str) or name not in self.signatures:
            raise ServingError(f"Serving signature name: {name!r} not found in signature def; the model has "
                               f"{sorted(self.signatures)}")
        return name, self.inputs[name]

    def warm_up(self) -> None:
        """Call every signature once before serving, so the first request does not pay for it."""
        for sig, specs in self.inputs.items():
            example = self._warmup_inputs(sig, specs)
            if example is None:
                continue
            try:
                self.call(sig, example)
            except ServingError as e:
                log.debug("warm-up of %s/%s %s skipped: %s", self.name, self.version, sig, e)

    def _warmup_inputs(self, sig, specs):
        kind = self.cnnapp.get("kind")
        if kind == "image" and set(specs) == {"image_bytes"}:
            import tensorflow as tf
            h, w = self.cnnapp.get("image_size", [8, 8])
            png = tf.io.encode_png(tf.zeros([h, w, self.cnnapp.get("channels", 1)], tf.uint8)).numpy()
            return {"image_bytes": np.array([png], dtype=object)}
        if kind == "text" and set(specs) == {"sentences"}:
            return {"sentences": np.array([b"warm up"], dtype=object)}
        out = {}
        for n, s in specs.items():
            if s.shape is None or any(d is None for d in s.shape[1:]):
                return None     # unknown sizes: no generic example to make
            shape = (1, *s.shape[1:]) if s.shape else ()
            out[n] = np.full(shape, b"", dtype=object) if s.dtype == "string" else np.zeros(shape, s.np_dtype)
        return out

    def metadata(self) -> dict:
        """TF Serving's GetModelMetadata `signature_def` map for this version."""
        defs = {}
        for sig, fn in self.signatures.items():
            inputs = {n: _tensor_info(s.dtype, s.shape, f"{sig}_{n}:0") for n, s in self.inputs[sig].items()}
            outputs = {}
            for i, (n, t) in enumerate(sorted(fn.structured_outputs.items())):
                shape = None if t.shape.rank is None else tuple(t.shape.as_list())
                outputs[n] = _tensor_info(t.dtype.name, shape, f"StatefulPartitionedCall:{i}")
            defs[sig] = {"inputs": inputs, "outputs": outputs, "method_name": "tensorflow/serving/predict",
                         "defaults": {}}
        return {"signature_def": {"signature_def": defs}}

    def close(self) -> None:
        if self.batcher:
            self.batcher.close()


def _tensor_info(dtype: str, shape, name: str) -> dict:
    dims = [] if shape is None else [{"size": str(-1 if d is None else d), "name": ""} for d in shape]
    return {"dtype": DTYPE_NAMES.get(dtype, dtype.upper()),
            "tensor_shape": {"dim": dims, "unknown_rank": shape is None}, "name": name}


@dataclass
class VersionState:
    state: str                   # START, LOADING, AVAILABLE, UNLOADING, END (TF Serving's states)
    error: str = ""
    stamp: float = 0.0           # saved_model.pb mtime: a rewritten failed version is retried


class ModelManager:
    """>>> mgr = ModelManager(config); mgr.poll(); mgr.resolve("digits", None, None).call(...)"""

    def __init__(self, config: ServerConfig, metrics=None):
        self.config, self.metrics = config, metrics
        self._models = {m.name: m for m in config.models}
        self._serving: dict[str, dict[int, Servable]] = {m.name: {} for m in config.models}
        self._states: dict[str, dict[int, VersionState]] = {m.name: {} for m in config.models}
        self._lock = threading.Lock()            # guards the tables requests read
        self._poll_lock = threading.Lock()       # one poll at a time (poller thread or a test)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ requests
    def _label_target(self, name: str, label: str) -> int:
        """The version a label points at; NotFound (naming the model's labels) for an unknown one."""
        labels = dict(self._models[name].labels)
        if label not in labels:
            raise NotFound(f"Unrecognized servable version label: {label} "
                           f"(model {name} has labels {sorted(labels)})")
        return labels[label]

    @staticmethod
    def _version_number(version: str) -> int | None:
        """A URL version as an int64-sized integer, None when it is not one."""
        return layout.parse_version(version)

    def resolve(self, name: str, version: str | None, label: str | None) -> Servable:
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
                found = serving.get(self._version_number(version))
                if found is None:
                    raise NotFound(f"Servable not found for request: Specific({name}, {version})")
                return found
            if not serving:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return serving[max(serving)]

    def status(self, name: str, version: str | None = None, label: str | None = None) -> dict:
        with self._lock:
            states = self._states.get(name)
            if states is None:
                raise NotFound(f"Could not find any versions of model {name}")
            if label is not None:
                version = str(self._label_target(name, label))
            if version is not None:
                v = self._version_number(version)
                if v not in states:
                    raise NotFound(f"Could not find version {version} of model {name}")
                items = [(v, states[v])]
            else:
                items = sorted(states.items())
        if not items:
            raise NotFound(f"Could not find any versions of model {name}")
        return {"model_version_status": [
            {"version": str(v), "state": s.state,
             "status": {"error_code": "UNKNOWN" if s.error else "OK", "error_message": s.error}}
            for v, s in items]}

    def model_names(self) -> list[str]:
        return sorted(self._models)

    # ------------------------------------------------------------------ versions
    def poll(self) -> None:
        """Load what each policy aspires to, warm up, switch in; unload the rest. Safe to call any time."""
        with self._poll_lock:
            for model in self._models.values():
                self._poll_model(model)

    def _poll_model(self, model: ModelConfig) -> None:
        on_disk = _version_dirs(model.base_path)
        aspired = model.policy.aspired(list(on_disk))
        states = self._states[model.name]
        for v in aspired:
            stamp = _stamp(on_disk[v])
            st = states.get(v)
            if st is not None and (st.state == "AVAILABLE" or (st.error and st.stamp == stamp)):
                continue        # loaded, or failed and unchanged since
            with self._lock:
                states[v] = VersionState("LOADING", stamp=stamp)
            log.info("loading %s version %d from %s", model.name, v, on_disk[v])
            try:
                servable = Servable(model.name, v, on_disk[v], self.config.batching, self.metrics)
                servable.warm_up()
            except Exception as e:  # noqa: BLE001 - any load failure is reported, the server keeps going
                reason = tf_error_reason(e) if hasattr(e, "message") else f"{type(e).__name__}: {str(e)[:200]}"
                log.error("%s version %d failed to load: %s", model.name, v, reason)
                with self._lock:
                    states[v] = VersionState("END", error=f"Failed to load {on_disk[v]}: {reason}", stamp=stamp)
                continue
            with self._lock:
                self._serving[model.name][v] = servable
                states[v] = VersionState("AVAILABLE", stamp=stamp)
            log.info("serving %s version %d", model.name, v)
        # Unload versions no longer aspired, but never the last good one while its successor has
        # not loaded: a failed new version must not leave the model unavailable.
        loaded_aspired = [v for v in aspired if v in self._serving[model.name]]
        with self._lock:
            for v in list(self._serving[model.name]):
                if v in aspired or (not loaded_aspired and v == max(self._serving[model.name])):
                    continue
                servable = self._serving[model.name].pop(v)
                states[v] = VersionState("END")
                servable.close()
                log.info("unloaded %s version %d", model.name, v)
            for v in list(states):
                if v not in on_disk and v not in self._serving[model.name] and states[v].state != "END":
                    states[v] = VersionState("END")

    def start_polling(self) -> None:
        if self.config.poll_seconds <= 0 or self._thread is not None:
            return
        self._stop.clear()

        def loop():
            while not self._stop.wait(self.config.poll_seconds):
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


def _stamp(path: Path) -> float:
    for f in ("saved_model.pb", "saved_model.pbtxt"):
        try:
            return (path / f).stat().st_mtime
        except OSError:
            continue
    return 0.0
