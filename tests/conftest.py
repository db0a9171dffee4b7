"""Shared test set-up: small thread pools (2-core machines), a per-session dataset root with
Fashion-MNIST staged from Debian's package when it is installed, and deterministic seeds."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# Integration modules, slow as a whole (torchrun, detectron2 training, Slurm, packaging, the GPU
# rehearsal, studies in subprocesses): `pytest -m "not slow"` leaves them out. Single slow tests
# elsewhere carry @pytest.mark.slow themselves.
SLOW_MODULES = {"test_slurm", "test_packaging", "test_gpu_check", "test_engine", "test_detection", "test_study",
                "test_detection_timm", "test_torchrun_restart"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def data_root(tmp_path_factory):
    """A dataset root for the session; ``$RDET_DATASETS`` points there during tests."""
    root = tmp_path_factory.mktemp("datasets")
    old = os.environ.get("RDET_DATASETS")
    os.environ["RDET_DATASETS"] = str(root)
    yield root
    if old is None:
        os.environ.pop("RDET_DATASETS", None)
    else:
        os.environ["RDET_DATASETS"] = old


@pytest.fixture(scope="session")
def fashion_mnist_root(data_root):
    """``data_root`` with Fashion-MNIST staged; skips when Debian's package is not installed."""
    from rdet.data.offline import stage_fashion_mnist
    from rdet.core.errors import DatasetError

    try:
        return stage_fashion_mnist(data_root)
    except DatasetError as e:
        if os.environ.get("CI"):  # CI installs it (`make test`): missing data there is a failure
            raise
        pytest.skip(str(e))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits_pretrained(tmp_path_factory):
    """A ResNet-18 pretrained (standard) on digits at 16px by rdet.pretrain: (record, output dir)."""
    from helpers import digits_pretrain_cfg

    from rdet.tasks import pretrain

    out = tmp_path_factory.mktemp("digits_std")
    return pretrain.run(digits_pretrain_cfg(out, eps=0.0, epochs=6)), out


@pytest.fixture(scope="session")
def trained_digits(digits_pretrained):
    """(model in eval mode, 64 test images, labels) from the digits-pretrained ResNet-18."""
    from rdet.backbones import create_classifier
    from rdet.data.offline import digits_dataset
    from rdet.data.transforms import test_transform

    _, out = digits_pretrained
    model = create_classifier("resnet18", 10, weights=str(out / "model_final.pth")).eval()
    ds = digits_dataset(False, transform=test_transform(16, 16))
    x = torch.stack([ds[i][0] for i in range(64)])
    y = torch.tensor([ds[i][1] for i in range(64)])
    return model, x, y
