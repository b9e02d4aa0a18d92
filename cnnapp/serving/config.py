"""What `cnnapp serve` serves: plain frozen dataclasses, and TF Serving's model_config_list parser.

A `--model-config-file` in TF Serving's text format works unchanged here, e.g.::

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
    models: tuple[ModelConfig, ...]
    batching: BatchingParameters | None = None      # None: every request is its own signature call
    max_body_bytes: int = 64 * 1024 * 1024
    poll_seconds: float = 1.0                       # TF Serving's --file_system_poll_wait_seconds


def check_model_name(name: str, arg: str = "--model-name") -> str:
    # Names become URL path segments and folder names: no slashes, dots-only or other path tricks.
    if not layout.is_model_name(name):
        raise CnnappError(f"{arg}: a model name is letters, digits, '_', '-', '.'. Received: {name!r}")
    return name


def discover_models(base_path: Path, model_name: str | None = None) -> tuple[ModelConfig, ...]:
    """`base/<name>/<version>/` folders -> one config per name (or only `model_name`)."""
    base_path = Path(base_path)
    if not base_path.is_dir():
        raise CnnappError(f"--model-base-path: no such folder. Received: {base_path}")
    if model_name is not None:
        check_model_name(model_name)
        if not (base_path / model_name).is_dir():
            found = sorted(p.name for p in base_path.iterdir() if p.is_dir())
            raise CnnappError(f"--model-name: no folder {model_name!r} in {base_path} (found {found}). "
                              f"Received: {model_name}")
        return (ModelConfig(model_name, base_path / model_name),)
    names = sorted(p.name for p in base_path.iterdir()
                   if p.is_dir() and layout.is_model_name(p.name) and any(layout.is_version_name(c.name) for c in p.iterdir()))
    if not names:
        raise CnnappError(f"--model-base-path: no <name>/<version>/ model folders. Received: {base_path}")
    return tuple(ModelConfig(n, base_path / n) for n in names)


# ---------------------------------------------------------------------------- protobuf text format

_TOKEN = re.compile(r"\s*(?:#[^\n]*\n?\s*)*(?:([A-Za-z_][A-Za-z0-9_.]*)|('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")"
                    r"|(-?\d+(?:\.\d*)?)|([{}:<>\[\],;]))")


def _tokens(text: str):
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise CnnappError(f"--model-config-file: cannot parse at offset {pos}. Received: {text[pos:pos + 40]!r}")
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


def parse_text_proto(text: str) -> dict:
    """Protobuf text format -> {field: [values]} (repeated fields are lists; messages are dicts)."""
    tokens = list(_tokens(text))
    pos = 0

    def message(close: str | None) -> dict:
        nonlocal pos
        out: dict = {}
        while pos < len(tokens):
            kind, tok = tokens[pos]
            if kind == "punct" and tok in ("}", ">"):
                if close is None:
                    raise CnnappError(f"--model-config-file: unexpected {tok!r}. Received: token {pos}")
                pos += 1
                return out
            if kind == "punct" and tok in (",", ";"):
                pos += 1
                continue
            if kind != "ident":
                raise CnnappError(f"--model-config-file: expected a field name. Received: {tok!r}")
            pos += 1
            if pos < len(tokens) and tokens[pos] == ("punct", ":"):
                pos += 1
            if pos >= len(tokens):
                raise CnnappError(f"--model-config-file: field {tok!r} has no value. Received: end of file")
            vkind, value = tokens[pos]
            if vkind == "punct" and value in ("{", "<"):
                pos += 1
                value = message("}" if value == "{" else ">")
            elif vkind != "value":
                raise CnnappError(f"--model-config-file: field {tok!r} has no value. Received: {value!r}")
            else:
                pos += 1
            out.setdefault(tok, []).append(value)
        if close is not None:
            raise CnnappError("--model-config-file: a '{' is never closed. Received: end of file")
        return out

    return message(None)


def _one(msg: dict, key: str, default=None):
    return msg.get(key, [default])[-1]


def load_model_config_file(path: str | Path, relative_to: Path | None = None) -> tuple[ModelConfig, ...]:
    path = Path(path)
    try:
        root = parse_text_proto(path.read_text())
    except OSError as e:
        raise CnnappError(f"--model-config-file: cannot read ({e.strerror}). Received: {path}") from None
    configs = []
    for config_list in root.get("model_config_list", []):
        for cfg in config_list.get("config", []):
            name = check_model_name(str(_one(cfg, "name", "")), "--model-config-file name")
            base = _one(cfg, "base_path")
            if not base:
                raise CnnappError(f"--model-config-file: model {name!r} has no base_path. Received: {cfg}")
            base = Path(base)
            if not base.is_absolute():
                base = (relative_to or path.parent) / base
            policy_msg = _one(cfg, "model_version_policy", {})
            if "specific" in policy_msg:
                versions = tuple(int(v) for v in _one(policy_msg, "specific", {}).get("versions", []))
                if not versions:
                    raise CnnappError(f"--model-config-file: model {name!r}: specific policy lists no versions. "
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
                    raise CnnappError(f"--model-config-file: model {name!r}: label {label!r} points at version "
                                      f"{version}, which the policy does not serve. Received: {policy.versions}")
            configs.append(ModelConfig(name, base, policy, labels))
    if not configs:
        raise CnnappError(f"--model-config-file: no model_config_list {{ config {{ ... }} }} entries. Received: {path}")
    return tuple(configs)
