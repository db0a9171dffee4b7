"""DDP through torchrun on CPU (gloo): two processes with half the batch each reproduce one process
with the whole batch, for full-network transfer and for adversarial pretraining (4 steps each).

Exactness needs the same inputs and the same normalisation in both runs. Augmentation is seeded
per sample, so it no longer depends on the process count (tests/test_streams.py); these runs keep
DATA.AUGMENT False anyway, to test the reduction path alone, and use MODEL.BN fixed_stats (per-process BatchNorm batch statistics differ from whole-batch ones, and
SyncBatchNorm is GPU-only in PyTorch)."""
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rank_driver import subprocess_env
from rdet.engine import LAST, ShardSampler

COMMON = ["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.NUM_WORKERS", "0",
          "DATA.AUGMENT", "False", "DATA.MAX_TRAIN", "256", "DATA.MAX_TEST", "128", "MODEL.BN", "fixed_stats",
          "SOLVER.BATCH_SIZE", "64", "SOLVER.EPOCHS", "1", "MODEL.ARCH", "resnet18"]


def _torchrun(nproc, module, args, timeout=300):
    """``module``'s command with ``args`` in ``nproc`` gloo processes under torchrun; one process
    is the command's own main in this process (torchrun at world size 1 is the GPU check's).

    Each rank runs the command as its own process would (tests/rank_driver.py), and must have
    joined gloo's threads by the time ``main`` returns: left running into the interpreter's exit,
    one aborted a finished rank (exit -6) in about one such run in 60 on the loaded machine."""
    if nproc == 1:
        assert importlib.import_module(module).main(args) == 0
        return
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "--tee=1",
           str(Path(__file__).parent / "rank_driver.py"), module, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = [line for line in proc.stdout.splitlines() if "gloo threads before destroy:" in line]
    after = [line for line in proc.stdout.splitlines() if "gloo threads at exit:" in line]
    assert len(before) == nproc and all("pt_gloo_runloop" in line for line in before), proc.stdout[-3000:]
    assert len(after) == nproc and all(line.endswith("at exit: []") for line in after), proc.stdout[-3000:]


def _assert_same_weights(a, b):
    sa = torch.load(a / LAST, weights_only=True)["model"]
    sb = torch.load(b / LAST, weights_only=True)["model"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.timeout(600)
def test_two_process_full_network_matches_one(tmp_path, digits_pretrained):
    weights = digits_pretrained[1] / "model_final.pth"
    base = ["--dataset", "digits", "--mode", "full", "--weights", str(weights)] + COMMON + ["SOLVER.BASE_LR", "0.05"]
    for n in (1, 2):
        _torchrun(n, "rdet.cli.classify", base[:6] + ["--output-dir", str(tmp_path / f"p{n}")] + base[6:])
    _assert_same_weights(tmp_path / "p1", tmp_path / "p2")
    start = torch.load(weights, weights_only=True)["model"]["layer1.0.conv1.weight"]
    assert not torch.equal(start, torch.load(tmp_path / "p1" / LAST, weights_only=True)["model"]["layer1.0.conv1.weight"])
    import json

    r1, r2 = (json.loads((tmp_path / f"p{n}" / "result.json").read_text()) for n in (1, 2))
    assert r1["value"] == pytest.approx(r2["value"])  # sharded evaluation counts every test image once


@pytest.mark.timeout(600)
def test_two_process_adversarial_pretraining_matches_one(tmp_path, digits_pretrained):
    """Starts from a trained model (MODEL.WEIGHTS): from random init with fixed BN statistics nothing is
    normalised, logits saturate, and the PGD direction of a saturated sample (gradient ~0) is
    rounding noise, so 1e-8 differences in gradient summation order grow without bound."""
    weights = digits_pretrained[1] / "model_final.pth"
    for n in (1, 2):
        _torchrun(n, "rdet.cli.pretrain", ["--dataset", "digits", "--eps", "0.5", "--norm", "l2", "--output-dir",
                                       str(tmp_path / f"p{n}")] + COMMON +
                  ["SOLVER.BASE_LR", "0.01", "ADV.EVAL_STEPS", "2", "MODEL.WEIGHTS", str(weights)])
    _assert_same_weights(tmp_path / "p1", tmp_path / "p2")
    start = torch.load(weights, weights_only=True)["model"]["layer1.0.conv1.weight"]
    assert not torch.equal(start, torch.load(tmp_path / "p1" / LAST, weights_only=True)["model"]["layer1.0.conv1.weight"])


def test_shard_sampler_covers_each_index_once():
    shards = [list(ShardSampler(10, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(10))


def test_collectives_refuse_tensors_off_the_runtime_device():
    """NCCL takes CUDA tensors only: a CPU tensor reaching a collective on a GPU run fails there
    and only there, so the runtime refuses it everywhere (checked here without a GPU)."""
    from rdet.engine import Runtime

    with pytest.raises(RuntimeError, match="collective on a cpu tensor"):
        Runtime(torch.device("cuda", 0)).all_reduce(torch.zeros(3))
    t = torch.ones(2)
    assert Runtime(torch.device("cpu")).all_reduce(t) is t


@pytest.mark.timeout(600)
def test_batchnorm_updated_once_per_step_with_two_processes(tmp_path):
    """Eval-mode attack under DDP: N optimizer steps leave num_batches_tracked at N in every
    process (rank 0 writes the checkpoint), with 1 and with 2 gloo processes. Two loader workers
    per process, as users run: each rank still ends with its gloo threads joined (_torchrun)."""
    args = ["--dataset", "digits", "--eps", "0.5", "--norm", "l2"] + [
        a if a != "fixed_stats" else "train" for a in COMMON] + ["ADV.EVAL_STEPS", "1", "DATA.MAX_TEST", "16",
                                                                   "DATA.NUM_WORKERS", "2"]
    for n in (1, 2):
        _torchrun(n, "rdet.cli.pretrain", args + ["--output-dir", str(tmp_path / f"p{n}")])
        sd = torch.load(tmp_path / f"p{n}" / LAST, weights_only=True)["model"]
        tracked = {int(v) for k, v in sd.items() if k.endswith("num_batches_tracked")}
        assert tracked == {256 // 64}, (n, tracked)  # 256 images, global batch 64, 1 epoch: 4 steps



_LIBRARY_RANK = """
import os, sys
import torch
from rdet.cli import run_cli
from rdet.engine.runtime import Runtime, init_process_group
from rank_driver import gloo_threads  # tests/ is on PYTHONPATH


def main(argv):
    assert "torch._dynamo" not in sys.modules and "timm" not in sys.modules  # nothing imported torch.distributed.nn
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    init_process_group("gloo", rank, world)
    rt = Runtime(torch.device("cpu"), rank=rank, world_size=world, distributed=True)
    model = rt.wrap_ddp(torch.nn.Linear(4, 2))  # DDP imports torch.distributed.nn here
    model(torch.randn(3, 4)).sum().backward()
    rt.all_reduce(torch.ones(3))
    holder = {"model": model}
    holder["self"] = holder  # a reference cycle, as a trainer holds its model
    print("before:", gloo_threads())
    return 0


code = run_cli(main)
print("after:", gloo_threads())
sys.exit(code)
"""


@pytest.mark.timeout(300)
def test_a_rank_of_a_task_without_timm_joins_its_gloo_threads_too(tmp_path):
    """The library path alone (rdet's runtime and DDP, neither timm nor detectron2 imported
    first): the group is still freeable at the end, because the runtime imports
    ``torch.distributed.nn`` before making it (imported after, its default arguments hold it)."""
    script = tmp_path / "library_rank.py"
    script.write_text(_LIBRARY_RANK)
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "--tee=3", str(script)], capture_output=True, text=True, timeout=240,
                          env=subprocess_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = [line for line in proc.stdout.splitlines() if "before:" in line]
    after = [line for line in proc.stdout.splitlines() if "after:" in line]
    assert len(before) == 2 and all("pt_gloo_runloop" in line for line in before), proc.stdout
    assert len(after) == 2 and all(line.endswith("after: []") for line in after), proc.stdout
