"""Shared fixtures: tiny real models exported as real SavedModels, and paths to the shared data.

The tiny models are untrained (random weights) unless a test trains one itself: exports,
predict and serving contracts do not need accuracy, and building one takes a second.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
if not SHARED_DATA.is_dir():  # a clone elsewhere: ../shared beside the repository
    SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test with the reason."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared benchmark data not found at {path} (../shared/data beside the repository)")
    return path


def png_bytes(pixels: np.ndarray) -> bytes:
    import tensorflow as tf
    return tf.io.encode_png(np.asarray(pixels, dtype=np.uint8)).numpy()


def export_tiny_image_model(export_base: Path, name: str = "tiny_image", *, size=(8, 8), channels=1,
                            class_names=("zero", "one", "two"), version=None) -> Path:
    from cnnapp.models.image_cnn import build_image_cnn
    from cnnapp.preprocessing.image import ImageDecoder
    from cnnapp.tasks import export_model
    from cnnapp.tasks.images import ImageTask, image_prepared
    import keras
    keras.utils.set_random_seed(0)
    model = build_image_cnn(input_shape=(*size, channels), num_classes=len(class_names), filters=(4, 8),
                            dense_units=(8,), batch_norm=False)
    prepared = image_prepared(ImageDecoder(height=size[0], width=size[1], channels=channels, name="image_decoder"),
                              num_classes=len(class_names))
    return export_model(ImageTask(), model, prepared, class_names=list(class_names), export_base=export_base,
                        name=name, version=version)


def export_tiny_text_model(export_base: Path, name: str = "tiny_text", *, version=None) -> Path:
    from cnnapp.models.text_cnn import build_text_cnn
    from cnnapp.preprocessing.text import make_vectorizer
    from cnnapp.tasks import export_model
    from cnnapp.tasks.sentences import SentenceTask, text_prepared
    import keras
    keras.utils.set_random_seed(0)
    sentences = ["a good film", "a bad film", "great acting , great story", "dull and boring", "so so"]
    vectorizer = make_vectorizer(sentences, max_tokens=100, sequence_length=12)
    model = build_text_cnn(sequence_length=12, vocab_size=vectorizer.vocabulary_size(), num_classes=2,
                           region_sizes=(2, 3), feature_maps=4, embedding_dim=8)
    return export_model(SentenceTask(), model, text_prepared(vectorizer, num_classes=2),
                        class_names=["negative", "positive"], export_base=export_base, name=name, version=version)


@pytest.fixture(scope="session")
def model_base(tmp_path_factory) -> Path:
    """A model base path holding tiny_image/1 and tiny_text/1 (session-wide: do not modify)."""
    base = tmp_path_factory.mktemp("saved_models")
    export_tiny_image_model(base)
    export_tiny_text_model(base)
    return base


@pytest.fixture
def cli_runner():
    from click.testing import CliRunner
    return CliRunner()


def run_cli(args, *, input=None, expect_exit=0):
    """Invoke the CLI in-process; on an unexpected exit code, fail showing its output."""
    from click.testing import CliRunner
    from cnnapp.cli import cli
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    assert result.exit_code == expect_exit, f"exit {result.exit_code}, expected {expect_exit}:\n{result.output}"
    return result
