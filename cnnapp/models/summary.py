"""The table every CNN course draws: per layer, output shape, activations, parameters, multiply-adds.

Works on any Keras functional model; a layer applied to several inputs (the multichannel text
model's convolutions) gets one row per call, with its parameters counted once.
"""

from __future__ import annotations

import math


def _shape(tensor) -> tuple:
    return tuple(tensor.shape)


def _macs(layer, in_shape: tuple, out_shape: tuple) -> int:
    """Multiply-accumulates per example for conv and dense layers (0 for the rest)."""
    import keras   # in the functions: `cnnapp summary`'s argument errors come before Keras loads
    if isinstance(layer, (keras.layers.Conv1D, keras.layers.Conv2D)):
        kernel = math.prod(layer.kernel_size)
        return math.prod(out_shape[1:]) * kernel * in_shape[-1]
    if isinstance(layer, keras.layers.Dense):
        return math.prod(out_shape[1:]) * in_shape[-1]
    return 0


def summary_rows(model) -> list[dict]:
    rows = []
    for layer in model.layers:
        nodes = [n for n in layer._inbound_nodes] or [None]
        for i, node in enumerate(nodes):
            if node is None:
                continue
            outs = node.output_tensors
            ins = node.input_tensors
            out_shape = _shape(outs[0])
            in_shape = _shape(ins[0]) if ins else out_shape
            rows.append({
                "name": layer.name if len(nodes) == 1 else f"{layer.name}[{i}]",
                "type": type(layer).__name__,
                "output_shape": out_shape,
                "activations": math.prod(d for d in out_shape[1:] if d is not None),
                "params": layer.count_params() if i == 0 and layer.built else 0,
                "macs": _macs(layer, in_shape, out_shape),
            })
    return rows


def format_summary(model) -> str:
    rows = summary_rows(model)
    trainable = sum(math.prod(w.shape) for w in model.trainable_weights)
    total = model.count_params()
    header = ("layer", "type", "output shape", "activations", "params", "MACs")
    table = [header] + [(r["name"], r["type"], str(r["output_shape"]).replace("None", "N"),
                         f"{r['activations']:,}", f"{r['params']:,}", f"{r['macs']:,}") for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def fmt(row):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

    out = [f"Model: {model.name}", fmt(header), line] + [fmt(r) for r in table[1:]] + [line]
    acts = sum(r["activations"] for r in rows)
    macs = sum(r["macs"] for r in rows)
    out += [
        f"Total params: {total:,}  (trainable {trainable:,}, non-trainable {total - trainable:,})",
        f"Activations per example: {acts:,} values ({acts * 4 / 1024:,.1f} KiB as float32)",
        f"Forward cost per example: {macs:,} multiply-adds ({2 * macs / 1e6:,.2f} MFLOP)",
    ]
    return "\n".join(out)


def summarize(kind: str, choice, data_args: dict) -> str:
    """The table for a registered model built on stand-in data arguments, with its resolved options."""
    import numpy as np

    from cnnapp.models import get_model
    spec = get_model(choice.name, kind=kind)
    spec.check_options(choice.options)
    resolved = {**spec.options(), **choice.options}
    if kind == "text" and resolved.get("embedding_mode", "rand") != "rand":   # shapes only: stand-in vectors
        data_args = {**data_args, "embedding_matrix": np.zeros(
            (data_args["vocab_size"], resolved.get("embedding_dim") or 128), "float32")}
    model = spec.build(data_args, choice.options)
    options = ", ".join(f"{k}={v!r}" for k, v in resolved.items())
    return f"{spec.name} ({spec.description})\noptions: {options}\n" + format_summary(model)
