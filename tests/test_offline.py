"""Offline data: Fashion-MNIST staged from Debian's package reads back through torchvision,
sklearn digits and skimage photos have the documented shapes."""
import importlib

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


def test_photos_are_rgb():
    for name, img in photos(["chelsea", "camera"]).items():
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8, name
