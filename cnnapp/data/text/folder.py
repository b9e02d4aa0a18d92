"""A folder of class subfolders of .txt files, one example per file (the aclImdb layout).

With train/ and test/ subfolders when present; aclImdb's unlabelled `unsup` folder is skipped.
"""

from __future__ import annotations

from pathlib import Path

from cnnapp.data import RawData
from cnnapp.data.text import TEXT_SOURCES, TextRequest, as_arrays, read_text
from cnnapp.errors import CnnappError

UNLABELLED_FOLDERS = {"unsup"}


def _read_class_folders(root: Path, encoding: str) -> tuple[list[str], list[str]]:
    sentences, labels = [], []
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in UNLABELLED_FOLDERS):
        for f in sorted(sub.glob("*.txt")):
            text = read_text(f, encoding=encoding, arg="--data")
            sentences.append(" ".join(text.split()))  # one example per file; newlines are not breaks
            labels.append(sub.name)
    return sentences, labels


@TEXT_SOURCES.register("folder", claims=lambda r: r.single_path is not None and r.single_path.is_dir(), priority=15)
def load_folder(request: TextRequest) -> RawData:
    """A folder of class subfolders of .txt files (train/ and test/ when present)."""
    root = request.single_path
    train_root = root / "train" if (root / "train").is_dir() else root
    sentences, labels = _read_class_folders(train_root, request.encoding)
    if not sentences:
        raise CnnappError(f"--data: no class subfolders with .txt files in {train_root}. Received: data={root}")
    class_names = sorted(set(labels))
    index = {c: i for i, c in enumerate(class_names)}
    x, y = as_arrays(sentences, labels, index, "--data", root)
    out = RawData(x=x, y=y, class_names=class_names, name=root.name, test_fraction=0.1,
                  description={"source": f"class subfolders of .txt files in {train_root}"})
    if train_root != root and (root / "test").is_dir():
        out.x_test, out.y_test = as_arrays(*_read_class_folders(root / "test", request.encoding), index,
                                           "--data", root / "test")
        out.description["test"] = f"the test/ subfolder of {root}"
    return out
