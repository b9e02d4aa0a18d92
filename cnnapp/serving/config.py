"""What `cnnapp serve` serves: plain frozen dataclasses, and TF Serving's config files read into them
(their text format is parsed by serving/text_proto.py).

A `--model_config_file` in TF Serving's text format works unchanged here, e.g.::

    model_config_list {
      config {
        name: 'digits'
        base_path: '/models/digits'
        model_platform: 'tensorflow'
        model_version_policy { specific { versions: 1 versions: 2 } }
        version_labels { key: 'stable' value: 1 }
      }
    }
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnapp import layout
from cnnapp.errors import CnnappError
from cnnapp.serving.text_proto import Message, one, parse_text_proto

_one = one      # the name the loaders below use


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's model_version_policy: `latest` (num_versions newest), `all`, or `specific`."""

    kind: str = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def aspired(self, on_disk: list[int]) -> list[int]:
        on_disk = sorted(on_disk)
        if self.kind == "all":
            return on_disk
        if self.kind == "specific":
            return [v for v in on_disk if v in self.versions]
        return on_disk[-self.num_versions:] if on_disk else []


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = VersionPolicy()
    labels: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's batching_parameters (same names; sizes in examples, timeout in microseconds)."""

    max_batch_size: int = 64
    batch_timeout_micros: int = 1000
    num_batch_threads: int = 2
    max_enqueued_batches: int = 64

    def __post_init__(self):
        for name in ("max_batch_size", "num_batch_threads", "max_enqueued_batches"):
            if getattr(self, name) < 1:
                raise CnnappError(f"batching: {name} must be at least 1. Received: {name}={getattr(self, name)}")
        if self.batch_timeout_micros < 0:
            raise CnnappError(f"batching: batch_timeout_micros must be >= 0. "
                              f"Received: batch_timeout_micros={self.batch_timeout_micros}")


@dataclass(frozen=True)
class ServerConfig:
    """Everything `create_app` needs; plain values, so tests build one in a line.

    `watch_base`: a folder of several models (`<base>/<name>/<version>/`, cnnapp's extension):
    models exported there after start are picked up by the same poll that finds new versions.
    """

    models: tuple[ModelConfig, ...]
    batching: BatchingParameters | None = None      # None: every request is its own signature call
    max_body_bytes: int = 64 * 1024 * 1024
    poll_seconds: float = 1.0                       # TF Serving's --file_system_poll_wait_seconds
    watch_base: Path | None = None
    # Bounded work per request: a request over this many examples is refused (400), and what is
    # accepted runs through the signature `chunk_examples` at a time, so memory follows the chunk.
    max_instances_per_request: int = 10_000
    chunk_examples: int = 256
    request_timeout_ms: int = 30_000                # TF Serving's --rest_api_timeout_in_ms (0: none)
    max_num_load_retries: int = 5                   # TF Serving's flags of the same names
    load_retry_interval_micros: int = 60_000_000
    # REST hardening (serving/guard.py, serving/http_limits.py): the Host names answered ("*": any;
    # `cnnapp serve` adds the bound address and --allowed_hosts), the time a request's head and
    # body may take to arrive (0: none), the largest request head (line and headers) in bytes.
    allowed_hosts: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    read_timeout_s: float = 60.0
    max_header_bytes: int = 64 * 1024
    # gRPC outputs: typed fields (float_val, string_val, ...) as TF Serving fills them by default;
    # True: tensor_content, TF Serving's --enable_serialization_as_tensor_content.
    enable_serialization_as_tensor_content: bool = False
    # A gRPC tensor may declare a shape far larger than its message (one float_val fills the whole
    # shape), so shapes are capped before anything is allocated: the values one example holds in
    # its signature's free (None) dimensions, e.g. H*W of a pixels input [None, None, None, C].
    # 4096*4096 (16.8 MP) is above a 12 MP phone photo and 4K video; the models resize to their own
    # input size (28x28 .. 224x224), so a larger image buys nothing but memory and time.
    max_free_values_per_example: int = 4096 * 4096
    # TF Serving's --saved_model_tags (the MetaGraph loaded), --enable_model_warmup (replay
    # assets.extra/tf_serving_warmup_requests, or one synthetic request a signature, before a version
    # is AVAILABLE) and --num_request_iterations_for_warmup (0: once), --rest_api_num_threads (the
    # REST worker pool), --rest_api_enable_cors_support, and the Prometheus path of
    # --monitoring_config_file (None: no metrics route; the library keeps TF Serving's path on, the
    # CLI turns it off unless the file enables it, as tensorflow_model_server does).
    saved_model_tags: tuple[str, ...] = ("serve",)
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 0
    rest_api_num_threads: int = 16
    enable_cors_support: bool = False
    prometheus_path: str | None = "/monitoring/prometheus/metrics"
    # TF Serving's --model_config_file_poll_wait_seconds: the file `models` came from is read again
    # this often (0: once), on the same poller as the base paths; models added to it are served,
    # models removed from it unloaded, policies and labels updated.
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0.0

    def __post_init__(self):
        for name in ("max_instances_per_request", "chunk_examples", "max_body_bytes",
                     "max_free_values_per_example", "rest_api_num_threads"):
            if getattr(self, name) < 1:
                raise CnnappError(f"--{name}: must be at least 1. Received: {getattr(self, name)}")


def check_model_name(name: str, arg: str = "--model_name") -> str:
    # Names become URL path segments and folder names: no slashes, dots-only or other path tricks.
    if not layout.is_model_name(name):
        raise CnnappError(f"{arg}: a model name is letters, digits, '_', '-', '.'. Received: {name!r}")
    return name


def _holds_versions(folder: Path) -> bool:
    try:
        return any(layout.is_version_name(c.name) and c.is_dir() for c in folder.iterdir())
    except OSError:
        return False


def discover_models(base_path: Path, model_name: str | None = None) -> tuple[ModelConfig, ...]:
    """What `--model_base_path` (and `--model_name`) name, as ModelConfigs.

    - TF Serving's form: `base_path` is ONE model's folder of numeric versions
      (`saved_models/digits` holding `1/`, `2/`), served as `model_name` (default: the folder's name;
      tensorflow_model_server would call it `default`).
    - cnnapp's extension: `base_path` holds several models (`saved_models/<name>/<version>/`):
      every one is served (or only `model_name`).
    """
    base_path = Path(base_path)
    if not base_path.is_dir():
        raise CnnappError(f"--model_base_path: no such folder. Received: {base_path}")
    if model_name is not None:
        check_model_name(model_name)
    if _holds_versions(base_path):
        name = model_name or base_path.resolve().name
        if model_name is None and not layout.is_model_name(name):
            raise CnnappError(f"--model_name: the folder name {name!r} is not a model name; pass --model_name. "
                              f"Received: {base_path}")
        configs = (ModelConfig(name, base_path),)
    elif model_name is not None:
        if not _holds_versions(base_path / model_name):
            found = sorted(p.name for p in base_path.iterdir() if p.is_dir())
            raise CnnappError(f"--model_name: {base_path} holds no numeric version folders, and no model folder "
                              f"{model_name!r} either (found {found[:20]}). Received: {model_name}")
        configs = (ModelConfig(model_name, base_path / model_name),)
    else:
        names = sorted(p.name for p in base_path.iterdir()
                       if p.is_dir() and layout.is_model_name(p.name) and _holds_versions(p))
        configs = tuple(ModelConfig(n, base_path / n) for n in names)
    if not any(layout.version_dirs(c.base_path) for c in configs):
        raise CnnappError(f"--model_base_path: nothing to serve: no <version>/saved_model.pb "
                          f"(nor <name>/<version>/saved_model.pb) under it. Received: {base_path}")
    return configs


def is_multi_model_base(base_path: Path) -> bool:
    """True when `base_path` is a folder of models (cnnapp's extension), not one model's versions."""
    return Path(base_path).is_dir() and not _holds_versions(Path(base_path))


def read_config_text(path: Path, arg: str) -> str:
    """A config file's text (UTF-8, as protobuf reads it); CnnappError naming `arg` otherwise."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CnnappError(f"{arg}: {Path(path).name} is not UTF-8 text ({e.reason} at byte {e.start}). "
                          f"Received: {path}") from None
    except OSError as e:
        raise CnnappError(f"{arg}: cannot read ({e.strerror}). Received: {path}") from None


def load_batching_parameters_file(path: str | Path) -> BatchingParameters:
    """TF Serving's --batching_parameters_file (text format, e.g. `max_batch_size { value: 64 }`)."""
    path = Path(path)
    msg = parse_text_proto(read_config_text(path, "--batching_parameters_file"), "--batching_parameters_file")
    known = {"max_batch_size", "batch_timeout_micros", "num_batch_threads", "max_enqueued_batches"}
    ignored = {"allowed_batch_sizes", "pad_variable_length_inputs", "thread_pool_name",
               "enable_large_batch_splitting", "max_execution_batch_size"}
    values = {}
    for key, entries in msg.items():
        if key in ignored:
            continue
        if key not in known:
            raise CnnappError(f"--batching_parameters_file: unknown field {key!r} (known: {sorted(known | ignored)}). "
                              f"Received: {path}")
        value = entries[-1]
        value = _one(value, "value") if isinstance(value, dict) else value
        if not isinstance(value, int):
            raise CnnappError(f"--batching_parameters_file: {key} needs an integer. Received: {value!r}")
        values[key] = value
    return BatchingParameters(**values)


DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


def load_monitoring_config_file(path: str | Path) -> str | None:
    """TF Serving's --monitoring_config_file (a MonitoringConfig in text format) -> the path Prometheus
    metrics are served on, or None (off)::

        prometheus_config { enable: true path: "/monitoring/prometheus/metrics" }
    """
    path = Path(path)
    msg = parse_text_proto(read_config_text(path, "--monitoring_config_file"), "--monitoring_config_file")
    unknown = set(msg) - {"prometheus_config"}
    if unknown:
        raise CnnappError(f"--monitoring_config_file: unknown field {sorted(unknown)[0]!r} (known: "
                          f"['prometheus_config']). Received: {path}")
    prometheus = _one(msg, "prometheus_config", {})
    if not isinstance(prometheus, dict) or set(prometheus) - {"enable", "path"}:
        raise CnnappError(f"--monitoring_config_file: prometheus_config takes enable and path. "
                          f"Received: {prometheus!r}")
    enable, route = _one(prometheus, "enable", False), _one(prometheus, "path", "") or DEFAULT_PROMETHEUS_PATH
    if not isinstance(enable, bool):
        raise CnnappError(f"--monitoring_config_file: prometheus_config.enable needs true or false. "
                          f"Received: {enable!r}")
    if not isinstance(route, str) or not route.startswith("/") or route.startswith("/v1/"):
        raise CnnappError(f"--monitoring_config_file: prometheus_config.path must start with '/' and not "
                          f"with /v1/. Received: {route!r}")
    return route if enable else None


# TF Serving's messages (model_server_config.proto, file_system_storage_path_source.proto, logging_config.proto):
# the fields each takes. Any other field is refused, as TF Serving's text-format parser refuses it.
_MODEL_SERVER_CONFIG = {"model_config_list", "custom_model_config"}
_MODEL_CONFIG = {"name", "base_path", "model_type", "model_platform", "model_version_policy", "version_labels",
                 "logging_config"}
_REPEATED = {"config", "version_labels", "versions"}
_POLICIES = {"latest", "all", "specific"}
ARG = "--model_config_file"


def _where(path: Path, msg: Message, field: str | None = None, index: int = -1) -> str:
    line = msg.line_of(field, index) if field else msg.line
    return f"{ARG}: {path.name} line {line}"


def _check_fields(path: Path, msg, known: set, what: str) -> None:
    """Refuse a field `what` does not have, or a singular field given twice (one line, its line number)."""
    if not isinstance(msg, Message):
        raise CnnappError(f"{ARG}: {path.name}: {what} must be a message {{ ... }}. Received: {str(msg)[:80]!r}")
    for field, values in msg.items():
        if field not in known:
            raise CnnappError(f"{_where(path, msg, field, 0)}: unknown field {field!r} in {what} (it takes "
                              f"{', '.join(sorted(known))}). Received: {field}")
        if len(values) > 1 and field not in _REPEATED:
            raise CnnappError(f"{_where(path, msg, field, 1)}: field {field!r} of {what} is given more than once "
                              f"(first on line {msg.line_of(field, 0)}). Received: {field}")


def _typed(path: Path, msg: Message, field: str, kind, what: str, index: int = -1, default=None):
    value = msg.get(field, [default])[index]
    if value is default:
        return value
    wrong_int = kind is int and (isinstance(value, bool) or not isinstance(value, int))
    if wrong_int or kind is str and not isinstance(value, str):
        raise CnnappError(f"{_where(path, msg, field, index)}: {what}.{field} needs "
                          f"{'an integer' if kind is int else 'a quoted string'}. Received: {str(value)[:80]!r}")
    return value


def _policy(path: Path, cfg: Message, name: str) -> VersionPolicy:
    msg = one(cfg, "model_version_policy")
    if msg is None:
        return VersionPolicy()
    what = f"model {name!r} model_version_policy"
    _check_fields(path, msg, _POLICIES, what)
    if len(msg) != 1:
        raise CnnappError(f"{_where(path, msg)}: {what} takes one of latest, all, specific. Received: {sorted(msg)}")
    (kind, (body,)), = msg.items()
    if kind == "all":
        _check_fields(path, body, set(), f"{what}.all")
        return VersionPolicy("all")
    if kind == "latest":
        _check_fields(path, body, {"num_versions"}, f"{what}.latest")
        num = _typed(path, body, "num_versions", int, f"{what}.latest", default=1)
        if num < 1:
            raise CnnappError(f"{_where(path, body, 'num_versions')}: {what}.latest.num_versions must be at least 1. "
                              f"Received: {num}")
        return VersionPolicy("latest", num_versions=num)
    _check_fields(path, body, {"versions"}, f"{what}.specific")
    versions = tuple(_typed(path, body, "versions", int, f"{what}.specific", index=i)
                     for i in range(len(body.get("versions", []))))
    if not versions:
        raise CnnappError(f"{_where(path, body)}: {what}.specific lists no versions. Received: specific {{}}")
    return VersionPolicy("specific", versions=versions)


def _labels(path: Path, cfg: Message, name: str, policy: VersionPolicy) -> tuple[tuple[str, int], ...]:
    labels: dict[str, int] = {}
    for entry in cfg.get("version_labels", []):
        what = f"model {name!r} version_labels"
        _check_fields(path, entry, {"key", "value"}, what)
        key, version = _typed(path, entry, "key", str, what), _typed(path, entry, "value", int, what)
        if key is None or version is None:
            raise CnnappError(f"{_where(path, entry)}: {what} needs a key and a value. Received: {dict(entry)}")
        if key in labels:
            raise CnnappError(f"{_where(path, entry)}: {what}: label {key!r} is given twice. Received: {key}")
        if policy.kind == "specific" and version not in policy.versions:
            raise CnnappError(f"{_where(path, entry)}: {what}: label {key!r} points at version {version}, which the "
                              f"policy does not serve. Received: {policy.versions}")
        labels[key] = version
    return tuple(labels.items())


def load_model_config_file(path: str | Path, relative_to: Path | None = None) -> tuple[ModelConfig, ...]:
    """TF Serving's --model_config_file (a ModelServerConfig in text format) -> ModelConfigs.

    Read as TF Serving reads it: an unknown field (`model_version_polcy`), a singular field given
    twice, or two models of one name are refused, in one line naming it and its line; strings are
    UTF-8 (`base_path: 'modèles'` is kept as written); a relative base_path is relative to the file's
    folder. Whether a base path holds versions is the server's business (it warns and polls).
    """
    path = Path(path)
    root = parse_text_proto(read_config_text(path, ARG), f"{ARG}: {path.name}")
    _check_fields(path, root, _MODEL_SERVER_CONFIG, "ModelServerConfig")
    if "custom_model_config" in root:
        raise CnnappError(f"{_where(path, root, 'custom_model_config')}: custom_model_config is not served by "
                          f"cnnapp; use model_config_list. Received: custom_model_config")
    configs, lines = [], {}
    for config_list in root.get("model_config_list", []):
        _check_fields(path, config_list, {"config"}, "model_config_list")
        for cfg in config_list.get("config", []):
            _check_fields(path, cfg, _MODEL_CONFIG, "config")
            name = _typed(path, cfg, "name", str, "config", default="")
            check_model_name(name, f"{_where(path, cfg, 'name' if 'name' in cfg else None)}: name")
            if name in lines:
                raise CnnappError(f"{_where(path, cfg, 'name')}: model name {name!r} is listed twice (first on line "
                                  f"{lines[name]}); TF Serving refuses that too. Received: {name}")
            lines[name] = cfg.line_of("name")
            what = f"model {name!r}"
            base = _typed(path, cfg, "base_path", str, what)
            if not base:
                raise CnnappError(f"{_where(path, cfg)}: {what} has no base_path. Received: {sorted(cfg)}")
            platform = _typed(path, cfg, "model_platform", str, what, default="tensorflow")
            if platform != "tensorflow":
                raise CnnappError(f"{_where(path, cfg, 'model_platform')}: {what}: model_platform must be "
                                  f"'tensorflow' (cnnapp serves SavedModels). Received: {platform!r}")
            base = Path(base)
            if not base.is_absolute():
                base = (relative_to or path.parent) / base
            policy = _policy(path, cfg, name)
            configs.append(ModelConfig(name, base, policy, _labels(path, cfg, name, policy)))
    if not configs:
        raise CnnappError(f"{ARG}: no model_config_list {{ config {{ ... }} }} entries. Received: {path}")
    return tuple(configs)
