"""Shared test set-up: small thread pools (2-core machines), a per-session dataset root with
Fashion-MNIST staged from Debian's package when it is installed, and deterministic seeds.

``make test`` runs the suite in pytest-xdist workers, one test file per worker at a time
(``--dist loadfile``, so a module's fixtures are built once), the longest files first. Each worker
and every process its tests start use one thread: two workers of two threads each on 2 cores
spin-wait each other's OpenMP threads into far slower runs."""
from __future__ import annotations

import gc
import os

import pytest

XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER")
if XDIST_WORKER:
    os.environ["OMP_NUM_THREADS"] = "1"  # before torch is imported; subprocesses inherit it


def pytest_configure(config):
    """Thread pools for the processes that run tests. The xdist controller runs none: it leaves
    torch's import (about 2 s, before any worker starts) to the workers."""
    if XDIST_WORKER or not config.getoption("numprocesses", None):
        import torch

        torch.set_num_threads(1 if XDIST_WORKER else max(1, min(2, os.cpu_count() or 1)))


# Integration modules, slow as a whole (torchrun, detectron2 training, Slurm, packaging, the GPU
# rehearsal, studies in subprocesses): `pytest -m "not slow"` leaves them out. Single slow tests
# elsewhere carry @pytest.mark.slow themselves.
SLOW_MODULES = {"test_slurm", "test_packaging", "test_gpu_check", "test_engine", "test_detection", "test_study",
                "test_detection_timm", "test_torchrun_restart", "test_card", "test_segmentation"}

# Seconds each file's tests took in one run here (Intel Xeon, 2 cores, 2 workers): in the whole
# suite and in its "not slow" part. Files start longest first, so that under xdist no long file
# starts last while the other worker idles (the Slurm requeue test alone is about 2.5 minutes).
FILE_SECONDS = {"test_slurm": (240, 0), "test_autoattack": (133, 5), "test_detection": (100, 0),
                "test_gpu_check": (87, 0), "test_pretrain": (81, 17), "test_segmentation": (76, 0),
                "test_detection_timm": (62, 0), "test_resume": (60, 5), "test_timm_backbones": (55, 10),
                "test_engine": (50, 0), "test_card": (41, 0), "test_packaging": (37, 0), "test_classify": (35, 12),
                "test_select": (33, 21), "test_torchrun_restart": (33, 0), "test_study": (24, 0),
                "test_trainer": (24, 13), "test_convert": (23, 7), "test_evaluate": (17, 3), "test_streams": (13, 1),
                "test_report": (11, 2), "test_transferability_study": (11, 0), "test_backbones": (8, 4),
                "test_preprocessing": (8, 7.5), "test_attacks": (6, 4.5), "test_skip_init": (6, 2.5),
                "test_checkpoint": (5, 3)}


def pytest_collection_finish(session):
    """What collection imported (torch, torchvision, timm, detectron2, every test module) lives as
    long as this process: out of the garbage collector's walks from here on, as a command's own
    process does once its work starts (rdet.core.collector)."""
    gc.collect()
    gc.freeze()


def pytest_ignore_collect(collection_path, config):
    """Under ``-m "not slow"`` the slow modules are not imported at all (a second less of start-up
    in each worker than collecting and then deselecting them)."""
    if _fast_only(config) and collection_path.stem in SLOW_MODULES:
        return True
    return None


def _fast_only(config) -> bool:
    return config.getoption("markexpr", "").replace(" ", "") == "notslow"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _module(item) in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    fast = _fast_only(config)
    items.sort(key=lambda item: -FILE_SECONDS.get(_module(item), (0, 0))[fast])  # stable: file order otherwise


def _module(item) -> str:
    return item.module.__name__.rsplit(".", 1)[-1]


def _shared_dir(tmp_path_factory) -> "os.PathLike":
    """A folder all xdist workers of this run share (this session's temporary folder without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if XDIST_WORKER else base


@pytest.fixture(scope="session", autouse=True)
def data_root(tmp_path_factory):
    """A dataset root for the session; ``$RDET_DATASETS`` points there during every test, so that
    what a run stages there (the digits split, Fashion-MNIST) never lands in the working tree."""
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
    import torch

    torch.manual_seed(0)


@pytest.fixture(scope="session")
def digits_pretrained(tmp_path_factory):
    """A ResNet-18 pretrained (standard) on digits at 16px by rdet.pretrain: (record, output dir).
    Trained once per run: the first xdist worker to need it trains it, the others read it."""
    from filelock import FileLock
    from helpers import digits_pretrain_cfg

    from rdet.core.records import read_record
    from rdet.tasks import pretrain

    shared = _shared_dir(tmp_path_factory)
    out = shared / "digits_std"
    with FileLock(str(shared / "digits_std.lock")):
        if (out / "result.json").is_file():
            return read_record(out / "result.json"), out
        return pretrain.run(digits_pretrain_cfg(out, eps=0.0, epochs=4)), out


@pytest.fixture(scope="session")
def trained_digits(digits_pretrained):
    """(model in eval mode, 64 test images, labels) from the digits-pretrained ResNet-18."""
    import torch

    from rdet.backbones import create_classifier
    from rdet.data.offline import digits_dataset
    from rdet.data.transforms import test_transform

    _, out = digits_pretrained
    model = create_classifier("resnet18", 10, weights=str(out / "model_final.pth")).eval()
    ds = digits_dataset(False, transform=test_transform(16, 16))
    x = torch.stack([ds[i][0] for i in range(64)])
    y = torch.tensor([ds[i][1] for i in range(64)])
    return model, x, y
