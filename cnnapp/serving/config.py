"""What `cnnapp serve` serves: plain frozen dataclasses, and TF Serving's model_config_list parser.

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

import re
from dataclasses import dataclass
from pathlib import Path

from cnnapp import layout
from cnnapp.errors import CnnappError


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


def load_batching_parameters_file(path: str | Path) -> BatchingParameters:
    """TF Serving's --batching_parameters_file (text format, e.g. `max_batch_size { value: 64 }`)."""
    path = Path(path)
    try:
        msg = parse_text_proto(path.read_text(), "--batching_parameters_file")
    except OSError as e:
        raise CnnappError(f"--batching_parameters_file: cannot read ({e.strerror}). Received: {path}") from None
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
    try:
        msg = parse_text_proto(path.read_text(), "--monitoring_config_file")
    except OSError as e:
        raise CnnappError(f"--monitoring_config_file: cannot read ({e.strerror}). Received: {path}") from None
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


# ---------------------------------------------------------------------------- protobuf text format

_TOKEN = re.compile(r"\s*(?:#[^\n]*\n?\s*)*(?:([A-Za-z_][A-Za-z0-9_.]*)|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
                    r"|(-?\d+(?:\.\d*)?)|([{}:<>\[\],;]))")


def _tokens(text: str, arg: str = "--model_config_file"):
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CnnappError(f"{arg}: cannot parse at offset {pos}. Received: {text[pos:pos + 40]!r}")
        pos = m.end()
        ident, string, number, punct = m.groups()
        if ident is not None:
            yield "ident", ident
        elif string is not None:
            yield "value", string[1:-1].encode().decode("unicode_escape")
        elif number is not None:
            yield "value", int(number) if re.fullmatch(r"-?\d+", number) else float(number)
        elif punct is not None:
            yield "punct", punct


def parse_text_proto(text: str, arg: str = "--model_config_file") -> dict:
    """Protobuf text format -> {field: [values]} (repeated fields are lists; messages are dicts)."""
    tokens = list(_tokens(text, arg))
    pos = 0

    def message(close: str | None) -> dict:
        nonlocal pos
        out: dict = {}
        while pos < len(tokens):
            kind, tok = tokens[pos]
            if kind == "punct" and tok in ("}", ">"):
                if close is None:
                    raise CnnappError(f"{arg}: unexpected {tok!r}. Received: token {pos}")
                pos += 1
                return out
            if kind == "punct" and tok in (",", ";"):
                pos += 1
                continue
            if kind != "ident":
                raise CnnappError(f"{arg}: expected a field name. Received: {tok!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos] == ("punct", ":"):
                pos += 1
            if pos >= len(tokens):
                raise CnnappError(f"{arg}: field {tok!r} has no value. Received: end of file")
            vkind, value = tokens[pos]
            if vkind == "punct" and value in ("{", "<"):
                pos += 1
                value = message("}" if value == "{" else ">")
            elif vkind == "ident":          # true / false / an enum name
                value = {"true": True, "false": False}.get(value, value)
                pos += 1
            elif vkind != "value":
                raise CnnappError(f"{arg}: field {tok!r} has no value. Received: {value!r}")
            else:
                pos += 1
            out.setdefault(tok, []).append(value)
        if close is not None:
            raise CnnappError(f"{arg}: a '{{' is never closed. Received: end of file")
        return out

    return message(None)


def _one(msg: dict, key: str, default=None):
    return msg.get(key, [default])[-1]


def load_model_config_file(path: str | Path, relative_to: Path | None = None) -> tuple[ModelConfig, ...]:
    path = Path(path)
    try:
        root = parse_text_proto(path.read_text())
    except OSError as e:
        raise CnnappError(f"--model_config_file: cannot read ({e.strerror}). Received: {path}") from None
    configs = []
    for config_list in root.get("model_config_list", []):
        for cfg in config_list.get("config", []):
            name = check_model_name(str(_one(cfg, "name", "")), "--model_config_file name")
            base = _one(cfg, "base_path")
            if not base:
                raise CnnappError(f"--model_config_file: model {name!r} has no base_path. Received: {cfg}")
            base = Path(base)
            if not base.is_absolute():
                base = (relative_to or path.parent) / base
            policy_msg = _one(cfg, "model_version_policy", {})
            if "specific" in policy_msg:
                versions = tuple(int(v) for v in _one(policy_msg, "specific", {}).get("versions", []))
                if not versions:
                    raise CnnappError(f"--model_config_file: model {name!r}: specific policy lists no versions. "
                                      f"Received: {policy_msg}")
                policy = VersionPolicy("specific", versions=versions)
            elif "all" in policy_msg:
                policy = VersionPolicy("all")
            else:
                policy = VersionPolicy("latest", num_versions=int(_one(_one(policy_msg, "latest", {}) or {},
                                                                        "num_versions", 1)))
            labels = tuple((str(_one(lab, "key")), int(_one(lab, "value"))) for lab in cfg.get("version_labels", []))
            for label, version in labels:
                if policy.kind == "specific" and version not in policy.versions:
                    raise CnnappError(f"--model_config_file: model {name!r}: label {label!r} points at version "
                                      f"{version}, which the policy does not serve. Received: {policy.versions}")
            configs.append(ModelConfig(name, base, policy, labels))
    if not configs:
        raise CnnappError(f"--model_config_file: no model_config_list {{ config {{ ... }} }} entries. Received: {path}")
    return tuple(configs)
