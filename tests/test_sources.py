"""Every registered data source, image and sentence, read from data the test writes: the registry
picks it for its request and it returns well-formed RawData. A new source without a case here fails
`test_every_registered_source_has_a_case`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_image import make_idx_folder, write_image_folder
from test_text import NEG, POS, write_lines


def text_request(**options):
    from cnnapp.data.text import TextRequest
    if "data" in options:
        options["data"] = tuple(str(d) for d in options["data"])
    return TextRequest(**options)


def image_request(**options):
    from cnnapp.data.image import ImageRequest
    from cnnapp.preprocessing.image import ImageDecoder
    return ImageRequest(decoder_factory=lambda h, w, c: ImageDecoder(height=h, width=w, channels=c), **options)


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


TEXT_CASES = {
    "demo": lambda tmp: text_request(),
    "class-files": lambda tmp: text_request(data=[write_lines(tmp / "r.pos", POS), write_lines(tmp / "r.neg", NEG)]),
    "labelled-lines": lambda tmp: text_request(data=[write_lines(tmp / "a.all", [f"1 {s}" for s in POS] +
                                                                 [f"0 {s}" for s in NEG])]),
    "csv": lambda tmp: text_request(data=[write_lines(tmp / "a.csv", ["text,label"] + [f"{s.replace(',', '')},p"
                                                                                      for s in POS] +
                                                      [f"{s.replace(',', '')},n" for s in NEG])]),
    "jsonl": lambda tmp: text_request(data=[write_jsonl(tmp / "a.jsonl", [{"text": s, "label": "pos"} for s in POS] +
                                                        [{"text": s, "label": "neg"} for s in NEG])]),
    "folder": lambda tmp: text_request(data=[_text_folder(tmp / "reviews")]),
}
IMAGE_CASES = {
    "digits": lambda tmp: image_request(),
    "idx": lambda tmp: image_request(data=str(make_idx_folder(tmp / "idx", n_train=30, n_test=10))),
    "folder": lambda tmp: image_request(data=str(write_image_folder(tmp / "shapes", per_class=3)),
                                        image_size=(12, 12)),
    "fashion_mnist": lambda tmp: image_request(dataset="fashion_mnist",
                                               data_dir=str(make_idx_folder(tmp / "fashion-mnist", n_train=30,
                                                                            n_test=10).parent)),
}
# TFDS needs prepared data or the network: its offline message is tested in test_image / test_text.
OFFLINE_ONLY = {("text", "tfds"), ("image", "tfds")}


def _text_folder(root: Path) -> Path:
    for label, sentences in (("pos", POS), ("neg", NEG)):
        for i, s in enumerate(sentences):
            write_lines(root / label / f"{i}.txt", [s])
    return root


def registered():
    from cnnapp.data.image import IMAGE_SOURCES
    from cnnapp.data.text import TEXT_SOURCES
    return ([("text", n) for n in TEXT_SOURCES.sources()] + [("image", n) for n in IMAGE_SOURCES.sources()])


def test_every_registered_source_has_a_case():
    missing = [f"{k}:{n}" for k, n in registered() if (k, n) not in OFFLINE_ONLY
               and n not in (TEXT_CASES if k == "text" else IMAGE_CASES)]
    assert not missing, f"sources without a test case here: {missing}"


@pytest.mark.parametrize("kind, name", [c for c in registered() if c not in OFFLINE_ONLY])
def test_source_is_chosen_for_its_request_and_reads_well_formed_data(tmp_path, kind, name):
    from cnnapp.data.image import IMAGE_SOURCES, read_image_data
    from cnnapp.data.text import TEXT_SOURCES, read_text_data
    request = (TEXT_CASES if kind == "text" else IMAGE_CASES)[name](tmp_path)
    registry, read = (TEXT_SOURCES, read_text_data) if kind == "text" else (IMAGE_SOURCES, read_image_data)
    assert registry.detect(request).name == name
    data, source = read(request)
    assert source == name and len(data.class_names) >= 2 and data.name
    assert data.y.dtype == np.int64 and len(data.x) == len(data.y) > 0
    assert set(np.unique(data.y)) <= set(range(len(data.class_names)))
    if kind == "image" and data.reader is not None:   # files, decoded in tf.data by the reader
        assert all(Path(p).is_file() for p in data.x)
        pixels = data.reader.decode(str(data.x[0])).numpy()
        assert pixels.dtype == np.uint8 and pixels.shape == (*data.info["image_size"], data.info["channels"])
        assert data.reader.example_bytes == pixels.nbytes
    elif kind == "image":
        assert data.x.dtype == np.uint8 and data.x.ndim == 4 and data.info["channels"] == data.x.shape[3]
    else:
        assert all(isinstance(s, str) for s in data.x)
    splits = data.to_splits(seed=1)
    assert splits.counts()["train"] > 0 and splits.counts()["validation"] > 0


def test_jsonl_trains_and_reads_dev_and_test_in_their_own_formats(tmp_path):
    """--data JSON Lines, --dev labelled lines, --test CSV: each file read in its own format."""
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": s, "label": "1"} for s in POS * 2] +
                        [{"text": s, "label": "0"} for s in NEG * 2])
    dev = write_lines(tmp_path / "dev.txt", [f"1 {POS[0]}", f"0 {NEG[0]}"])
    test = write_lines(tmp_path / "test.csv", ["label,text", f"1,{POS[1].replace(',', '')}", f"0,{NEG[1].replace(',', '')}"])
    result = run_cli(["train-text", "--data", train, "--dev", dev, "--test", test, "--region-sizes", "2",
                      "--feature-maps", "4", "--embedding-dim", "8", "--epochs", "1", "--no-export",
                      "--run-dir", tmp_path / "runs", "--name", "j"])
    config = json.loads((tmp_path / "runs" / "j" / "config.json").read_text())
    assert config["source"] == "jsonl" and config["resolved"]["splits"] == {"train": 24, "validation": 2, "test": 2}
    assert "test accuracy:" in result.output


@pytest.mark.parametrize("line, why", [("{not json", "is not JSON"), ('["a", 1]', "is not an object"),
                                       ('{"text": 3, "label": 1}', "is not an object"),
                                       ('{"text": "ok"}', "is not an object")])
def test_a_bad_jsonl_line_is_one_error_naming_the_file_and_line(tmp_path, line, why):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine", "label": "a"}) + "\n\n" + line + "\n", encoding="utf-8")
    result = run_cli(["train-text", "--data", path, "--run-dir", tmp_path], expect_exit=1)
    assert result.output.startswith(f"Error: --data: {path} line 3 {why}"), result.output
    assert len(result.output.strip().splitlines()) == 1
