"""Random streams keyed by position (rdet.engine.streams): augmentation per sample, independent of
loader workers, batch size and ranks; per-step seeds that differ between ranks; the guard's batch
and generator."""
import pytest
import torch
import torchvision.transforms as T
from PIL import Image

from rdet.attacks import random_start
from rdet.config import get_pretrain_cfg, get_transfer_cfg
from rdet.data.classification import targets_of
from rdet.engine import EpochTrainer, Runtime, build_loader
from rdet.engine.streams import stratified_indices
from rdet.transfer import extract_views


class _Ramp(torch.utils.data.Dataset):
    """The same 3x24x24 ramp image at every index, through a random crop + flip + jitter: an
    item's pixels depend only on the crop parameters drawn for it. The label is the index."""

    def __init__(self, n=24):
        self.n = n
        g = torch.linspace(0, 1, 24)
        self.img = torch.stack([g.view(1, -1).expand(24, 24), g.view(-1, 1).expand(24, 24), g.outer(g)])
        self.tf = T.Compose([T.RandomResizedCrop(16, scale=(0.3, 1.0), antialias=True), T.RandomHorizontalFlip(),
                             T.ColorJitter(0.3, 0.3)])

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.tf(self.img), i


def _cfg(workers):
    cfg = get_transfer_cfg()
    cfg.merge_from_list(["DATA.NUM_WORKERS", str(workers)])
    return cfg


def _by_index(loader):
    out = {}
    for x, y in loader:
        for xi, yi in zip(x, y):
            out[int(yi)] = xi
    return out


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 5, 3)

    def features(self, x):
        return self.conv(x).flatten(1)


def test_extract_views_same_for_batch_sizes_and_workers():
    ds, net, rt = _Ramp(), _Net(), Runtime(torch.device("cpu"))
    runs = {}
    for batch, workers in ((4, 0), (7, 0), (4, 2), (7, 2)):
        loader = build_loader(ds, _cfg(workers), rt, train=False, batch_size=batch)
        views, labels = extract_views(net, loader, rt, views=3, seed=5)
        runs[batch, workers] = views
        assert labels.tolist() == list(range(len(ds)))
    ref = runs[4, 0]
    for key, views in runs.items():
        for v in range(3):
            torch.testing.assert_close(views[v], ref[v], rtol=0, atol=1e-6, msg=str(key))
    assert not torch.allclose(ref[0], ref[1]) and not torch.allclose(ref[1], ref[2])  # views differ
    assert not torch.allclose(ref[0][0], ref[0][1])  # so do images within a view
    other = extract_views(net, build_loader(ds, _cfg(0), rt, train=False, batch_size=4), rt, views=1, seed=6)[0]
    assert not torch.allclose(other[0], ref[0])  # and seeds


def test_training_augmentation_independent_of_workers_batch_and_ranks():
    """An image's crop in an epoch is a function of (seed, epoch, index) only: the same with 0 or 2
    (persistent) workers, any batch size, one process or two; two ranks' batches at the same step
    get different crops; a persistent worker reseeds every epoch."""
    ds = _Ramp()
    one = build_loader(ds, _cfg(0), Runtime(torch.device("cpu")), train=True, batch_size=4, seed=3)
    ref = {}
    for epoch in (0, 1):
        one.sampler.set_epoch(epoch)
        ref[epoch] = _by_index(one)
    assert len(ref[0]) == 24 and any(not torch.equal(ref[0][i], ref[1][i]) for i in ref[0])  # new draw per epoch
    shards = {}
    for rank in (0, 1):
        rt = Runtime(torch.device("cpu"), rank=rank, world_size=2)
        loader = build_loader(ds, _cfg(2), rt, train=True, batch_size=6, seed=3)
        for epoch in (0, 1):  # the same persistent workers serve both epochs
            loader.sampler.set_epoch(epoch)
            got = _by_index(loader)
            for i, x in got.items():
                assert torch.equal(x, ref[epoch][i]), (rank, epoch, i)
        loader.sampler.set_epoch(0)
        shards[rank] = next(iter(loader))[0]
    assert not torch.allclose(shards[0], shards[1])  # rank 0 and rank 1 draw different crop parameters


class _RecordStarts:
    """A step that records the random start drawn for its batch (as FGSM-RS / PGD would)."""

    def __init__(self):
        self.starts = []

    def __call__(self, trainer, x, y):
        self.starts.append(random_start(torch.full_like(x, 0.5), 0.1, "linf"))
        logits = trainer.ddp(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        trainer.optimize(loss)
        return logits.detach(), loss.detach()


def _starts(rank, seed=0):
    torch.manual_seed(123)  # the same global state for both: only (seed, epoch, iteration, rank) may differ
    model = torch.nn.Linear(4, 3)
    data = [(torch.rand(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = _RecordStarts()
    tr = EpochTrainer(model, data, opt, torch.optim.lr_scheduler.StepLR(opt, 10),
                      Runtime(torch.device("cpu"), rank=rank, world_size=2), step, 2, seed=seed)
    tr.train()
    return step.starts


def test_random_starts_differ_between_ranks_and_repeat_per_position():
    r0, r1, r0_again = _starts(0), _starts(1), _starts(0)
    assert len(r0) == 6
    assert all(not torch.allclose(a, b) for a, b in zip(r0, r1))  # ranks draw different starts
    assert all(torch.equal(a, b) for a, b in zip(r0, r0_again))  # a position always draws the same
    assert not torch.allclose(r0[0], r0[1])  # and each step its own


def test_guard_batch_covers_every_class_of_an_image_folder(tmp_path):
    from torchvision.datasets import ImageFolder

    for c in range(5):
        (tmp_path / f"class{c}").mkdir()
        for k in range(6):
            Image.new("RGB", (8, 8), (40 * c, 10 * k, 0)).save(tmp_path / f"class{c}" / f"{k}.png")
    ds = ImageFolder(str(tmp_path))
    labels = targets_of(ds)
    assert labels[:6] == [0] * 6  # the first images are one class: why the batch is stratified
    idx = stratified_indices(labels, 12, seed=0)
    counts = torch.bincount(torch.tensor([labels[i] for i in idx]), minlength=5)
    assert len(set(idx)) == 12 and counts.min() >= 2 and counts.max() <= 3
    assert stratified_indices(labels, 12, seed=0) == idx != stratified_indices(labels, 12, seed=1)


def test_guard_hook_measures_a_stratified_batch_and_leaves_the_rng_as_found(tmp_path):
    from rdet.backbones import create_classifier
    from rdet.data.build import datasets_from_cfg
    from rdet.tasks.pretrain import _guard_hook

    cfg = get_pretrain_cfg()
    cfg.merge_from_list(["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16",
                         "DATA.MAX_TRAIN", "200", "ADV.EPS", "0.1", "ADV.NORM", "linf", "ADV.METHOD", "fgsm_rs",
                         "ADV.GUARD_SAMPLES", "20", "ADV.GUARD_STEPS", "2", "OUTPUT_DIR", str(tmp_path)])
    train_ds, _, n, _ = datasets_from_cfg(cfg)
    rt = Runtime(torch.device("cpu"))
    model = create_classifier("resnet18", n)
    before = torch.get_rng_state()
    guard = _guard_hook(cfg, model, train_ds, rt)
    assert sorted(set(guard.batch_labels)) == list(range(n)) and len(guard.batch_labels) == 20
    first = guard.measure()
    assert torch.equal(torch.get_rng_state(), before)  # building and measuring drew nothing from the run's RNG
    assert guard.measure() == first  # the same PGD start every time: measurements differ only by the weights


_RANK_SCRIPT = """
import sys, torch
sys.path.insert(0, sys.argv[1])
from test_streams import _Ramp, _RecordStarts, _cfg
from rdet.engine import EpochTrainer, build_loader, setup_runtime
from rdet.config import get_pretrain_cfg
cfg = get_pretrain_cfg()
cfg.merge_from_list(["RUNTIME.DEVICE", "cpu", "SOLVER.BATCH_SIZE", "8", "DATA.NUM_WORKERS", "2"])
rt = setup_runtime(cfg)  # torchrun: a gloo process group
assert rt.distributed and rt.world_size == 2
loader = build_loader(_Ramp(), cfg, rt, train=True, seed=0)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 24))  # labels are indices
ddp = rt.wrap_ddp(model)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
step = _RecordStarts()
tr = EpochTrainer(model, loader, opt, torch.optim.lr_scheduler.StepLR(opt, 10), rt, step, 1, ddp=ddp, seed=0)
first = next(iter(loader))[0]
tr.train()
torch.save({"batch": first, "starts": step.starts}, sys.argv[2] + f"/rank{rt.rank}.pt")
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_two_gloo_ranks_draw_different_crops_and_random_starts(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "ranks.py"
    script.write_text(_RANK_SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(script), str(Path(__file__).parent), str(tmp_path)],
                          capture_output=True, text=True, timeout=500, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert not torch.allclose(r0["batch"], r1["batch"])  # the same image everywhere: only the crops differ
    assert len(r0["starts"]) == len(r1["starts"]) == 24 // 8
    assert all(not torch.allclose(a, b) for a, b in zip(r0["starts"], r1["starts"]))
