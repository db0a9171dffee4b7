"""Offline data: Fashion-MNIST staged from Debian's package reads back through torchvision,
sklearn digits and skimage photos have the documented shapes; the digits split staged in a
dataset root reads back equal without scikit-learn and is remade when stale or broken."""
import importlib
import subprocess
import sys

import numpy as np
import pytest

from rdet.data.offline import digits, digits_dataset, fashion_mnist, photos, stage_fashion_mnist
from rdet.core.errors import DatasetError

fm_mod = importlib.import_module("rdet.data.offline.fashion_mnist")  # the package re-exports a function of that name


def test_fashion_mnist_from_debian(fashion_mnist_root):
    train, test = fashion_mnist(True, fashion_mnist_root), fashion_mnist(False, fashion_mnist_root)
    assert (len(train), len(test)) == (60000, 10000)
    assert sorted(set(train.targets.tolist())) == list(range(10))
    img, label = train[0]
    assert img.size == (28, 28) and 0 <= label < 10
    assert stage_fashion_mnist(fashion_mnist_root) == fashion_mnist_root  # idempotent


def test_fashion_mnist_missing_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(fm_mod, "DEBIAN_DIR", tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="apt-get install dataset-fashion-mnist"):
        stage_fashion_mnist(tmp_path / "root")
    assert not (tmp_path / "root" / "FashionMNIST" / "raw").exists()


def test_digits_split_is_fixed_and_stratified():
    images, labels = digits()
    assert images.shape == (1797, 8, 8) and images.dtype == np.uint8 and images.max() == 255
    a, b = digits_dataset(True), digits_dataset(False)
    assert len(a) + len(b) == 1797
    assert np.array_equal(digits_dataset(True).targets, a.targets)
    assert np.bincount(b.targets).min() >= 40


def test_staged_digits_split_reads_back_without_sklearn_and_is_remade_when_stale(tmp_path, caplog):
    dg = importlib.import_module("rdet.data.offline.sklearn_digits")
    made = dg.digits_split(root=tmp_path)
    staged = tmp_path / "digits" / "split-0.25-0.npz"
    assert staged.is_file()
    # another process reads the staged file and never imports scikit-learn (the point of staging)
    probe = ("import sys, numpy as np; from rdet.data.offline import digits_dataset; "
             f"d = digits_dataset(False, root={str(tmp_path)!r}); "
             "print(int(d.targets.sum()), int(d.images.sum()), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(int(made["test_labels"].sum())), str(int(made["test_images"].sum())), "False"]
    fresh = dg._split(0.25, 0)  # what scikit-learn gives now
    assert all(np.array_equal(dg.digits_split(root=tmp_path)[k], fresh[k]) for k in fresh)
    # made by another scikit-learn: remade; a broken file: said and remade; never pickles
    with open(staged, "wb") as f:
        np.savez(f, sklearn_version=np.array("0.0"), **{k: v[:3] for k, v in fresh.items()})
    assert all(np.array_equal(dg.digits_split(root=tmp_path)[k], fresh[k]) for k in fresh)
    staged.write_bytes(b"not a zip")
    caplog.set_level("WARNING", logger="rdet")
    assert all(np.array_equal(dg.digits_split(root=tmp_path)[k], fresh[k]) for k in fresh)
    assert "remaking the staged digits split" in caplog.text
    with np.load(staged, allow_pickle=False) as f:
        assert str(f["sklearn_version"]) == dg._sklearn_version()


def test_photos_are_rgb():
    for name, img in photos(["chelsea", "camera"]).items():
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
