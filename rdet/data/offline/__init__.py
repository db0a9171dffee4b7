"""All data that needs no download, in one place.

* Fashion-MNIST from Debian's ``dataset-fashion-mnist`` package (``fashion_mnist``);
* scikit-learn's bundled 8x8 digits (``digits``);
* scikit-image's bundled photographs (``photos``);
* data composed from those real pieces in real on-disk formats (detection: ``detection``).

Everything a demo or a test trains on comes from here, and each function says what it is.
"""
from rdet.data.offline.fashion_mnist import (FASHION_MNIST_CLASSES, fashion_mnist, stage_fashion_mnist)
from rdet.data.offline.detection import DATA_NOTE as DETECTION_DATA_NOTE
from rdet.data.offline.detection import compose_detection_dataset
from rdet.data.paths import data_root
from rdet.data.offline.photos import PHOTO_NAMES, photos
from rdet.data.offline.sklearn_digits import digits, digits_dataset

__all__ = ["data_root", "stage_fashion_mnist", "fashion_mnist", "FASHION_MNIST_CLASSES", "digits",
           "digits_dataset", "photos", "PHOTO_NAMES",
           "compose_detection_dataset", "DETECTION_DATA_NOTE"]
