"""What each layer of a cnnapp model is for, read from the graph (layer types and wiring), not names.

`inspect`, `summary` and the explain path use these roles, so they work for every registered
family and for models that were saved and reloaded:

- `feature_map_layers`: each conv block's output after its ReLU (for image models: the input of
  every spatial pooling layer, else every ReLU after a convolution);
- `first_conv`: the first Conv2D / Conv1D (its kernels are the "filters" students look at);
- `text_branches`: for each max-over-time pooling, its width and the layer that feeds it;
- `logits_layer`: the Dense layer whose output the final softmax turns into probabilities;
- `edge_padding`: the ZeroPadding1D before the sentence convolutions, if any.
"""

from __future__ import annotations

import keras

_SPATIAL_POOLS = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D,
                  keras.layers.GlobalMaxPooling2D, keras.layers.GlobalAveragePooling2D)
_CONVS = (keras.layers.Conv1D, keras.layers.Conv2D)


def _producer(tensor) -> keras.layers.Layer:
    return tensor._keras_history[0]


def _inputs_of(layer) -> list:
    node = layer._inbound_nodes[0]
    return list(node.input_tensors)


def _is_relu(layer) -> bool:
    if isinstance(layer, keras.layers.ReLU):
        return True
    return isinstance(layer, keras.layers.Activation) and getattr(layer.activation, "__name__", "") == "relu"


def _layers_in_order(model: keras.Model) -> list:
    """Layers in the functional graph's order, nested models (ensembles' members) excluded."""
    return [layer for layer in model.layers if layer._inbound_nodes]


def kind_of(model: keras.Model) -> str:
    return "text" if model.inputs[0].dtype in ("int32", "int64") else "image"


def first_conv(model: keras.Model):
    convs = [layer for layer in _layers_in_order(model) if isinstance(layer, _CONVS)]
    if not convs:
        raise ValueError(f"model {model.name} has no convolution layer")
    return convs[0]


def feature_map_layers(model: keras.Model) -> list:
    """The layers whose outputs are the conv blocks' activation maps, in order (image models)."""
    seen, out = set(), []
    for layer in _layers_in_order(model):
        if isinstance(layer, _SPATIAL_POOLS):
            source = _producer(_inputs_of(layer)[0])
            if id(source) not in seen and len(source.output.shape) == 4:
                seen.add(id(source))
                out.append(source)
    if out:
        return out
    # No pooling (strided convolutions): every ReLU on a 4-D map.
    return [layer for layer in _layers_in_order(model) if _is_relu(layer) and len(layer.output.shape) == 4]


def logits_layer(model: keras.Model):
    """The Dense layer feeding the final softmax."""
    layer = _producer(model.outputs[0])
    while not isinstance(layer, keras.layers.Dense):
        inputs = _inputs_of(layer)
        if len(inputs) != 1:
            raise ValueError(f"model {model.name}: no single Dense layer before its output")
        layer = _producer(inputs[0])
    return layer


def ngram_contribution(model: keras.Model):
    """The layer of the n-gram family (cnnapp.models.nbsvm) whose output is each n-gram's addition to each
    class's logit [N, L, C], or None for other models."""
    return next((layer for layer in _layers_in_order(model) if type(layer).__name__ == "NBContribution"), None)


def text_branches(model: keras.Model) -> list[tuple[int, keras.layers.Layer]]:
    """[(region width, pooling layer)] in concatenation order, for sentence models."""
    out = []
    for layer in _layers_in_order(model):
        if isinstance(layer, keras.layers.GlobalMaxPooling1D):
            source = _producer(_inputs_of(layer)[0])
            while not isinstance(source, keras.layers.Conv1D):
                source = _producer(_inputs_of(source)[0])
            out.append((int(source.kernel_size[0]), layer))
    return out


def edge_padding(model: keras.Model) -> int:
    pads = [layer for layer in _layers_in_order(model) if isinstance(layer, keras.layers.ZeroPadding1D)]
    return int(pads[0].padding[0]) if pads else 0
