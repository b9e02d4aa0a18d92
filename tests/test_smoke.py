"""Fast contracts of the fixtures every other test builds on."""

from conftest import png_bytes
import numpy as np


def test_tiny_models_export_and_predict(model_base):
    from cnnapp.inference import Predictor
    image = Predictor(model_base / "tiny_image")
    assert image.kind == "image"
    [pred] = image.predict([png_bytes(np.zeros((8, 8, 1)))])
    assert pred.classes == ["zero", "one", "two"] and abs(sum(pred.scores) - 1) < 1e-5
    text = Predictor(model_base / "tiny_text")
    assert text.kind == "text"
    preds = text.predict(["a good film", "", "é"])
    assert [len(p.scores) for p in preds] == [2, 2, 2]
