"""A lower bound on a model's parameters from its options, before anything is built.

`--filters 100000000` or `--feature-maps 1000000000` would otherwise allocate gigabytes for
seconds and end in an out-of-memory traceback. The bound counts only weights that certainly
exist, from the keywords the registered factories share (conv widths `filters`, `kernel_sizes`,
`convs_per_block`, `dense_units`; sentence `feature_maps`, `region_sizes`, `embedding_dim`), with
data sizes that are not known yet taken at their smallest, so a refused model really cannot fit.
No Keras: it runs before TensorFlow is imported.

    >>> parameter_lower_bound("text", {"feature_maps": 100, "region_sizes": (3, 4, 5), "embedding_dim": 128})[0]
    154456
"""

from __future__ import annotations

import os

from cnnapp.errors import CnnappError

FLOAT32_BYTES = 4


def parameter_lower_bound(kind: str, options: dict, data_args: dict | None = None) -> tuple[int, str, object]:
    """(parameters, the keyword that contributes most, its value) for resolved model `options`.

    `data_args` holds what is known of the data: `input_shape` (image), `vocab_size`, `num_classes`.
    """
    data_args = data_args or {}
    num_classes = data_args.get("num_classes") or 2
    terms: list[tuple[int, list[tuple[str, object, int]]]] = []   # (params, [(keyword, value, factor)])
    if kind == "image":
        channels = (data_args.get("input_shape") or (1, 1, 1))[-1]
        filters = tuple(options.get("filters") or ())
        kernels = tuple(options.get("kernel_sizes") or (3,))
        convs = options.get("convs_per_block") or 1
        previous = ("channels", channels, channels)
        for i, f in enumerate(filters):
            k = kernels[i] if i < len(kernels) else kernels[-1]
            factors = [("kernel_sizes", options.get("kernel_sizes"), k * k), previous, ("filters", filters, f)]
            terms.append((k * k * previous[2] * f + (convs - 1) * k * k * f * f, factors))
            previous = ("filters", filters, f)
        if not filters:   # the factories' derived blocks start at 32 filters (default_filters, default_vgg_filters)
            previous = ("filters", None, 32)
        units = tuple(options.get("dense_units") or ())
        for u in units:   # Flatten gives at least the last block's width
            terms.append((previous[2] * u, [previous, ("dense_units", units, u)]))
            previous = ("dense_units", units, u)
        terms.append((previous[2] * num_classes, [previous]))
    else:
        dim = options.get("embedding_dim") or 1
        maps = options.get("feature_maps") or 1
        regions = tuple(options.get("region_sizes") or (1,))
        vocab = data_args.get("vocab_size") or 2
        channels = 2 if options.get("embedding_mode") == "multichannel" else 1
        terms.append((channels * vocab * dim, [("vocab_size", vocab, vocab), ("embedding_dim", dim, dim)]))
        for width in regions:
            terms.append((width * dim * maps, [("region_sizes", regions, width), ("embedding_dim", dim, dim),
                                                ("feature_maps", maps, maps)]))
        terms.append((len(regions) * maps * num_classes, [("feature_maps", maps, maps)]))
    total = sum(t[0] for t in terms)
    biggest = max(terms, key=lambda t: t[0])[1]
    keyword, value, _ = max(biggest, key=lambda f: f[2])
    return total, keyword, value


def check_parameter_memory(kind: str, options: dict, data_args: dict | None = None, *, training: bool,
                           memory_bytes: int | None = None, arg_of=lambda key: f"--{key.replace('_', '-')}") -> int:
    """The lower bound of parameters, or a one-line CnnappError naming the option when their float32
    weights (and, to train, as many gradients) exceed the machine's physical memory."""
    params, keyword, value = parameter_lower_bound(kind, options, data_args)
    copies = 2 if training else 1
    needed = params * FLOAT32_BYTES * copies
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if needed > memory_bytes:
        what = "weights and gradients" if training else "weights"
        shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
        raise CnnappError(
            f"{arg_of(keyword)}: the model has at least {params:,} parameters, whose float32 {what} need "
            f"{needed / 2**30:,.1f} GiB, more than this machine's {memory_bytes / 2**30:,.1f} GiB of memory; "
            f"use a smaller {arg_of(keyword)}. Received: {keyword}={shown}")
    return params
