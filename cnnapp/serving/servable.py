"""One loaded version of a model: its signatures, its batcher, its chunked and cancellable
inference, its warm-up and its metadata (TF Serving's "servable"). The manager (serving/manager.py)
decides which versions are loaded; the service (serving/service.py) runs requests on them.
"""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path

import numpy as np

from cnnapp import layout
from cnnapp.errors import tf_error_reason
from cnnapp.serving.batching import Batcher
from cnnapp.serving.codec import InputSpec
from cnnapp.serving.errors import DeadlineExceeded, ServingError
from cnnapp.serving.work import Work, WorkStats, chunk_bounds, example_costs

log = logging.getLogger(__name__)

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"   # TF Serving's name and place
MAX_WARMUP_RECORDS = 1000                                            # TF Serving's kMaxNumRecords


def read_signature_defs(path: Path, tags: tuple[str, ...] = ("serve",)) -> dict:
    """{name: tensorflow.SignatureDef proto} of the MetaGraph tagged exactly `tags` (TF Serving's
    --saved_model_tags), read from the SavedModel file itself, so the metadata endpoint says exactly
    what `saved_model_cli show` says."""
    from tensorflow.core.protobuf import saved_model_pb2
    saved_model = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    if pb.is_file():
        saved_model.ParseFromString(pb.read_bytes())
    else:
        from google.protobuf import text_format
        text_format.Parse((path / "saved_model.pbtxt").read_text(), saved_model)
    graphs = [g for g in saved_model.meta_graphs if set(g.meta_info_def.tags) == set(tags)]
    if not graphs:
        found = [",".join(sorted(g.meta_info_def.tags)) for g in saved_model.meta_graphs]
        raise ValueError(f"the SavedModel has no MetaGraph tagged {','.join(sorted(tags))} "
                         f"(--saved_model_tags); it has {found}")
    return dict(graphs[0].signature_def)


class Servable:
    """One loaded version: its signatures (as InputSpecs) and, with batching on, its Batcher."""

    def __init__(self, name: str, version: int, path: Path, batching=None, metrics=None, *,
                 chunk_examples: int = 256, tags: tuple[str, ...] = ("serve",)):
        import tensorflow as tf
        self.name, self.version, self.path = name, version, path
        self.metrics = metrics
        self.signature_defs = read_signature_defs(path, tags)
        self.loaded = tf.saved_model.load(str(path), tags=list(tags))
        self.signatures = dict(self.loaded.signatures)
        if not self.signatures:
            raise ValueError("the SavedModel has no signatures")
        self.inputs: dict[str, dict[str, InputSpec]] = {}
        for sig_name, fn in self.signatures.items():
            specs = fn.structured_input_signature[1]
            self.inputs[sig_name] = {
                n: InputSpec(n, s.dtype.name, None if s.shape.rank is None else tuple(s.shape.as_list()))
                for n, s in sorted(specs.items())}
        self._tf_dtypes = {sig: {n: tf.as_dtype(s.dtype) for n, s in specs.items()}
                           for sig, specs in self.inputs.items()}
        self.cnnapp = layout.read_metadata(path)
        self.batcher = (Batcher(self.call, batching, name=f"{name}-{version}",
                                on_batch=(lambda n: metrics.batch(name, n)) if metrics else None)
                        if batching else None)
        # With batching, a chunk is at most one batch, so a large request never outgrows one.
        self.chunk_examples = min(chunk_examples, batching.max_batch_size) if batching else chunk_examples
        self._metadata = None

    def interface(self) -> dict:
        """What clients depend on: each signature's input names, dtypes and shapes."""
        return {sig: {n: (s.dtype, s.shape) for n, s in specs.items()} for sig, specs in self.inputs.items()}

    def call(self, signature: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One signature call on numpy inputs; bad input data (an undecodable image) -> 400."""
        import tensorflow as tf
        fn = self.signatures[signature]
        dtypes = self._tf_dtypes[signature]
        try:
            out = fn(**{n: tf.constant(a, dtype=dtypes[n]) for n, a in inputs.items()})
        except (tf.errors.InvalidArgumentError, ValueError, TypeError) as e:
            raise ServingError(f"{tf_error_reason(e)} (signature {signature!r} of {self.name} "
                               f"version {self.version})") from None
        return {k: v.numpy() for k, v in out.items()}

    def batchable(self, inputs: dict[str, np.ndarray]) -> bool:
        return self.batcher is not None and bool(inputs) and all(a.ndim for a in inputs.values())

    def infer(self, signature: str, inputs: dict[str, np.ndarray], *, deadline: float | None = None,
              work: Work | None = None, stats: WorkStats | None = None) -> dict:
        """Run a request of any accepted size, a chunk at a time (through the batcher when batching
        is on), so memory follows the chunk, not the request: at most `chunk_examples` examples, and
        encoded images cut by their decoded size (serving/work.py). Blocks; before every chunk
        `work` (or `deadline`, a time.monotonic() value) is checked, so a request past its deadline
        or cancelled stops computing there (DeadlineExceeded). `stats.chunks` counts chunks run."""
        work = work if work is not None else Work(deadline)
        sizes = {a.shape[0] for a in inputs.values() if a.ndim}
        n = sizes.pop() if len(sizes) == 1 else 0
        if n <= 1:
            return self._infer_chunk(signature, inputs, work, stats)
        bounds = chunk_bounds(n, self.chunk_examples, example_costs(inputs))
        if len(bounds) == 1:
            return self._infer_chunk(signature, inputs, work, stats)
        parts = [self._infer_chunk(signature, {k: v[start:stop] for k, v in inputs.items()}, work, stats)
                 for start, stop in bounds]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def _infer_chunk(self, signature, inputs, work: Work, stats: WorkStats | None):
        work.check()
        if stats is not None:
            stats.add("chunks")
        if self.batchable(inputs):
            future = self.batcher.submit(signature, inputs)
            if future is not None:
                try:
                    return future.result(timeout=work.remaining())
                except FutureTimeout:
                    raise DeadlineExceeded("Deadline exceeded while waiting for the batch") from None
        return self.call(signature, inputs)

    def signature(self, signature_name: str | None) -> tuple[str, dict[str, InputSpec]]:
        name = signature_name or "serving_default"
        if not isinstance(name, str) or name not in self.signatures:
            raise ServingError(f"Serving signature name: {name!r} not found in signature def; the model has "
                               f"{sorted(self.signatures)}")
        return name, self.inputs[name]

    def warm_up(self, iterations: int = 1) -> int:
        """Run warm-up requests before serving, so the first request does not pay for tracing and
        lazy initialisation: the export's `assets.extra/tf_serving_warmup_requests` (TF Serving's
        format: TFRecords of PredictionLog; each replayed `iterations` times), or, for an export
        without that file, one synthetic request per signature. Returns the requests run."""
        if (self.path / WARMUP_FILE).is_file():
            return self._replay_warmup_file(max(1, iterations))
        count = 0
        for sig, specs in self.inputs.items():
            example = self._warmup_inputs(sig, specs)
            if example is None:
                continue
            try:
                self.call(sig, example)
                count += 1
            except ServingError as e:
                log.debug("warm-up of %s/%s %s skipped: %s", self.name, self.version, sig, e)
        self._count_warmup(count)
        return count

    def _count_warmup(self, count: int) -> None:
        if self.metrics is not None and count:
            self.metrics.inc(":cnnapp:serving:model_warmup_request_count",
                             "Warm-up requests run before a version became AVAILABLE.", count,
                             model_name=self.name, model_version=str(self.version))

    def _replay_warmup_file(self, iterations: int) -> int:
        """TF Serving's saved_model_warmup: PredictLog requests are run on their signature; a
        record of another kind (classify, regress, multi_inference) is skipped with a log line."""
        import tensorflow as tf
        from tensorflow_serving.apis import prediction_log_pb2
        path = self.path / WARMUP_FILE
        count = skipped = 0
        for i, record in enumerate(tf.data.TFRecordDataset(str(path)).as_numpy_iterator()):
            if i >= MAX_WARMUP_RECORDS:
                raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records (TF Serving's limit)")
            entry = prediction_log_pb2.PredictionLog.FromString(record)
            if entry.WhichOneof("log_type") != "predict_log":
                skipped += 1
                continue
            request = entry.predict_log.request
            sig, specs = self.signature(request.model_spec.signature_name or None)
            inputs = {n: tf.make_ndarray(t) for n, t in request.inputs.items()}
            if set(inputs) != set(specs):
                raise ValueError(f"{path}: record {i} gives inputs {sorted(inputs)}, signature {sig!r} takes "
                                 f"{sorted(specs)}")
            for _ in range(iterations):
                self.call(sig, inputs)
                count += 1
        if skipped:
            log.info("%s version %d: %d warm-up records other than predict_log skipped", self.name,
                     self.version, skipped)
        log.info("%s version %d: warmed up with %d requests from %s", self.name, self.version, count, WARMUP_FILE)
        self._count_warmup(count)
        return count

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
        """TF Serving's REST GetModelMetadata `metadata`: the SignatureDefMap unpacked from its Any
        (no `@type`: TF Serving prints the map itself, see its
        saved_model_half_plus_two_2_versions_metadata.json), every signature (`__saved_model_init_op`
        too) as the SavedModel file has it."""
        if self._metadata is None:
            from google.protobuf import json_format
            defs = {k: json_format.MessageToDict(v, preserving_proto_field_name=True,
                                                 always_print_fields_with_no_presence=True)
                    for k, v in sorted(self.signature_defs.items())}
            self._metadata = {"signature_def": {"signature_def": defs}}
        return self._metadata

    def close(self) -> None:
        if self.batcher:
            self.batcher.close()


def describe(servable: Servable) -> str:
    return "; ".join(f"{sig}({', '.join(s.describe() for s in specs.values())})"
                     for sig, specs in sorted(servable.inputs.items()))
