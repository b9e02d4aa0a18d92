"""Model factories, registered by name: keyword-only, functional API, returned uncompiled.

Adding an architecture is one file in this folder with a `@register(...)` factory (every module
here is imported by `registry()`); the CLI's `--model`, `cnnapp models`, `summary`, `inspect`
and the parametrised model tests find it there. Training, export, inference and serving do not
change.

A factory takes the data-given arguments of its kind by keyword, and owns the defaults of all the
rest (`None` means "derive it from the input shape"):
- image models: `input_shape` (H, W, C; float pixels 0..255) and `num_classes`;
- text models: `sequence_length`, `vocab_size`, `num_classes` and `embedding_matrix` (or None).

The registry reads this folder's modules without importing them: each `@register("name", kind=...)`
line, the module's docstring and the factory's keyword defaults and annotations are parsed from the
source (`ast`), so `cnnapp models`, `--help` and a wrong `--model` or `--model-arg` answer without
loading Keras and TensorFlow; a factory's module is imported when it is first built. Keyword
defaults should be literals (a non-literal one makes `options()` import the module to read it);
`--model-arg` values are typed from the annotation, else the default (`check_options`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cnnapp.errors import CnnappError

KINDS = ("image", "text")
# What the task passes in; a user option may not set them.
DATA_ARGUMENTS = {
    "image": ("input_shape", "num_classes"),
    "text": ("sequence_length", "vocab_size", "num_classes", "embedding_matrix"),
}
DEFAULT_MODEL = {"image": "image_cnn", "text": "text_cnn"}
_NOT_A_LITERAL = object()


@dataclass(frozen=True)
class ModelSpec:
    """A registered factory, known from its module's source: `factory` imports the module."""
    name: str
    kind: str
    module: str                       # cnnapp.models.image_cnn
    factory_name: str                 # build_image_cnn
    description: str = ""             # the first line of the module's docstring
    defaults: dict[str, Any] = field(default_factory=dict)      # user keywords -> default (literals)
    annotations: dict[str, str] = field(default_factory=dict)   # user keywords -> annotation source

    @property
    def factory(self) -> Callable:
        return getattr(importlib.import_module(self.module), self.factory_name)

    def options(self) -> dict[str, Any]:
        """{keyword: default} of what a user may set (everything but the data-given arguments)."""
        if any(v is _NOT_A_LITERAL for v in self.defaults.values()):
            params = inspect.signature(self.factory).parameters
            return {n: params[n].default for n in self.defaults}
        return dict(self.defaults)

    def check_options(self, options: dict, arg_of=lambda key: f"--{key.replace('_', '-')}") -> dict:
        """`options` with each value checked against the keyword's type (annotation, else default):
        integers positive, floats finite and non-negative (`*dropout` below 1), an integer where a
        tuple of them is expected becomes a 1-tuple. One-line CnnappError otherwise."""
        unknown = sorted(set(options) - set(self.defaults))
        if unknown:
            raise CnnappError(f"{arg_of(unknown[0])}: model {self.name} takes no {unknown[0]!r}; it takes "
                              f"{', '.join(sorted(self.defaults))}. Received: {unknown[0]}={options[unknown[0]]!r}")
        return {key: _checked_value(self, key, value, arg_of(key)) for key, value in options.items()}

    def build(self, data_args: dict, options: dict | None = None):
        """The uncompiled keras.Model of the factory on `data_args` and the checked `options`."""
        options = self.check_options(dict(options or {}))
        return self.factory(**data_args, **options)


def _expected_type(spec: ModelSpec, key: str) -> tuple[str, bool]:
    """('int' | 'float' | 'bool' | 'str' | 'ints' | 'any', None allowed) of a keyword."""
    text = spec.annotations.get(key, "").replace(" ", "")
    default = spec.defaults.get(key)
    parts = [p for p in text.split("|") if p] if text else []
    optional = default is None or "None" in parts or "Optional[" in text
    parts = [p for p in parts if p != "None"]
    if parts:
        kind = parts[0]
        if kind.startswith(("tuple[int", "Sequence[int", "list[int")):
            return "ints", optional
        return (kind if kind in ("int", "float", "bool", "str") else "any"), optional
    if isinstance(default, bool):
        return "bool", optional
    for t, name in ((int, "int"), (float, "float"), (str, "str")):
        if isinstance(default, t):
            return name, optional
    if isinstance(default, tuple) and default and all(isinstance(v, int) for v in default):
        return "ints", optional
    return "any", optional


def _checked_value(spec: ModelSpec, key: str, value, arg: str):
    kind, optional = _expected_type(spec, key)

    def refuse(expected: str):
        raise CnnappError(f"{arg}: {spec.name}'s {key} takes {expected}. Received: {key}={value!r}")

    if value is None:
        if not optional:
            refuse(f"a value ({kind}), not null")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            refuse("true or false")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            refuse("a positive integer")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            refuse("a finite number")
        value = float(value)
        if value < 0 or (key.endswith("dropout") and value >= 1):
            refuse("a number in [0, 1)" if key.endswith("dropout") else "a number of 0 or more")
    elif kind == "str":
        if not isinstance(value, str):
            refuse("a string")
    elif kind == "ints":
        values = (value,) if isinstance(value, int) and not isinstance(value, bool) else value
        if (not isinstance(values, (tuple, list))
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values)):
            refuse("positive integers (32,64 or [32, 64])")
        value = tuple(values)
    return value


def register(name: str, *, kind: str):
    """Mark a factory as the model `name` of `kind` ('image' or 'text'). The registry finds the mark in
    the source (so `name` and `kind` must be literals); at import it only checks them."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}. Received: kind={kind}")

    def wrap(fn):
        fn.registered_as = (name, kind)
        return fn
    return wrap


def _literal(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return _NOT_A_LITERAL


def _specs_in(module: str, path: Path) -> list[ModelSpec]:
    """The registered factories of one module's source."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    doc = (ast.get_docstring(tree) or "").strip()
    specs = []
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        for dec in node.decorator_list:
            if not (isinstance(dec, ast.Call) and getattr(dec.func, "id", getattr(dec.func, "attr", "")) == "register"):
                continue
            name = _literal(dec.args[0])
            kind = next((_literal(k.value) for k in dec.keywords if k.arg == "kind"), None)
            if kind not in KINDS or not isinstance(name, str):
                raise ValueError(f"{path}: @register needs a literal name and kind. Received: {ast.unparse(dec)}")
            args = node.args
            defaults, annotations = {}, {}
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                if arg.arg in DATA_ARGUMENTS[kind] or arg.arg == "name" or default is None:
                    continue
                defaults[arg.arg] = _literal(default)
                if arg.annotation is not None:
                    annotations[arg.arg] = ast.unparse(arg.annotation)
            description = (doc or ast.get_docstring(node) or "").strip()
            specs.append(ModelSpec(name, kind, module, node.name, description.splitlines()[0] if description else "",
                                   defaults, annotations))
    return specs


def registry() -> dict[str, ModelSpec]:
    """Every registered model of this package, read from the sources (nothing is imported)."""
    models = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.name.startswith("_"):
            for spec in _specs_in(f"{__name__}.{info.name}", Path(__path__[0]) / f"{info.name}.py"):
                models[spec.name] = spec
    return dict(sorted(models.items()))


def import_models() -> None:
    """Import every model module: registers their custom Keras layers (ZeroPaddingTokens), which saved
    checkpoints name."""
    for spec in registry().values():
        importlib.import_module(spec.module)


def get_model(name: str | None, *, kind: str, arg: str = "--model") -> ModelSpec:
    """The registered model `name` of `kind` (None: the kind's default), or a one-line error."""
    models = registry()
    name = name or DEFAULT_MODEL[kind]
    choices = [n for n, s in models.items() if s.kind == kind]
    if name not in models or models[name].kind != kind:
        raise CnnappError(f"{arg}: unknown {kind} model; choose from {', '.join(choices)}. Received: {name}")
    return models[name]


def classifier_head(x, *, num_classes: int, dropout: float, max_norm: float | None = None):
    """The one head every model ends with: dropout -> dense `logits` -> softmax (float32 under mixed precision)."""
    import keras   # here, not at the top: the registry above must not load Keras
    if dropout:
        x = keras.layers.Dropout(dropout, name="head_dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm) if max_norm else None
    x = keras.layers.Dense(num_classes, kernel_constraint=constraint, name="logits")(x)
    # Softmax in float32 so mixed-precision training keeps stable probabilities.
    return keras.layers.Activation("softmax", dtype="float32", name="predictions")(x)
