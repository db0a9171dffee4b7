"""Shared test set-up: small thread pools (2-core machines), a per-session dataset root with
Fashion-MNIST staged from Debian's package when it is installed, and deterministic seeds."""
from __future__ import annotations

import os

import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


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
    from rdet.errors import DatasetError

    try:
        return stage_fashion_mnist(data_root)
    except DatasetError as e:
        if os.environ.get("CI"):  # CI installs it (`make test`): missing data there is a failure
            raise
        pytest.skip(str(e))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
