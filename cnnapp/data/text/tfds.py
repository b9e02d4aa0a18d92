"""A TensorFlow Datasets name (`--dataset imdb_reviews`, `glue/sst2`): prepared data, or a download."""

from __future__ import annotations

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES, TextRequest
from cnnapp.errors import CnnappError

# The text feature of the TFDS datasets people ask for; GLUE single-sentence tasks use "sentence".
TFDS_TEXT_FEATURE = {"imdb_reviews": "text", "glue": "sentence", "yelp_polarity_reviews": "text",
                     "ag_news_subset": "description"}


@TEXT_SOURCES.register("tfds", claims=lambda r: bool(r.dataset), priority=0)
def load_tfds(request: TextRequest) -> RawData:
    """--dataset NAME: a TFDS text data set (its test split, or GLUE's validation split, is the test set)."""
    from cnnapp.data.tfds_source import load_tfds_arrays
    name = request.dataset
    feature = request.text_column or TFDS_TEXT_FEATURE.get(name.split("/")[0].split(":")[0], "text")
    arrays, class_names = load_tfds_arrays(name, data_dir=request.data_dir, feature=feature)
    if "train" not in arrays:
        raise CnnappError(f"--dataset: no labelled train split in {name} (splits: {sorted(arrays)}). "
                          f"Received: {name}")
    x, y = arrays["train"]
    # GLUE's test labels are hidden (the loader drops them), so its validation split is the test set.
    test_split = "test" if "test" in arrays else ("validation" if "validation" in arrays else None)
    out = RawData(x=x, y=y, class_names=class_names, name=name.replace("/", "_").split(":")[0],
                  test_fraction=0.1, description={"source": f"TFDS {name}, feature {feature!r}"})
    if test_split:
        out.x_test, out.y_test = arrays[test_split]
        out.description["test"] = f"TFDS {name} split {test_split!r}"
    if test_split == "test" and "validation" in arrays:
        out.x_dev, out.y_dev = arrays["validation"]
        out.description["validation"] = f"TFDS {name} split 'validation'"
    return out
