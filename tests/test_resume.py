"""Runs that are killed and resumed end where an uninterrupted run ends: between epochs and in the
middle of one (SIGKILL, a real subprocess, DATA.NUM_WORKERS 2), free training's perturbation,
the overfitting guard's stop; and runs that must stop do: a non-finite loss, a full disk."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import digits_pretrain_cfg, kill_in_epoch

from rdet.cli import run_cli
from rdet.cli import pretrain as pretrain_cli
from rdet.core.errors import CheckpointError
from rdet.engine import FINAL, LAST, EpochTrainer
from rdet.tasks import pretrain

TESTS = Path(__file__).parent
# fgsm_rs: random starts (per-step seeds) and the guard (its own generator) are both in play;
# 128 images in batches of 32: 4 iterations an epoch
FAST = ["DATA.MAX_TRAIN", "128", "DATA.MAX_TEST", "32", "SOLVER.BATCH_SIZE", "32", "DATA.NUM_WORKERS", "2",
        "ADV.METHOD", "fgsm_rs", "ADV.EVAL_STEPS", "1", "ADV.GUARD_SAMPLES", "32", "ADV.GUARD_STEPS", "2"]

# A child process that SIGKILLs itself right after the optimizer step of (epoch, batch) -- no
# cleanup, no finally, its loader workers orphaned -- or, with epoch -1, resumes and finishes.
_CHILD = """
import os, signal, sys
sys.path.insert(0, sys.argv[1])
from helpers import digits_pretrain_cfg
from rdet.engine import EpochTrainer
from rdet.tasks import pretrain
out, epoch, batch, extra = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5:]
real = EpochTrainer.optimize
def optimize(self, loss):
    real(self, loss)
    if self.epoch == epoch and self.batch_in_epoch == batch:
        os.kill(os.getpid(), signal.SIGKILL)
EpochTrainer.optimize = optimize
pretrain.run(digits_pretrain_cfg(out, eps=0.05, norm="linf", epochs=3, extra=extra), resume=epoch < 0)
"""


def _child(out, epoch=-1, batch=-1, extra=()):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(TESTS), str(out), str(epoch), str(batch), *FAST, *extra],
                          capture_output=True, text=True, timeout=600, env=env)
    return proc


def _assert_same_final(a, b, tol=1e-6):
    sa = torch.load(Path(a) / FINAL, weights_only=True)["model"]
    sb = torch.load(Path(b) / FINAL, weights_only=True)["model"]
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=tol, msg=k)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    proc = _child(out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_between_epochs_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
    killed = _child(tmp_path, epoch=1, batch=1)  # right after epoch 1's checkpoint and one step of epoch 2
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = torch.load(tmp_path / LAST, weights_only=True)
    assert state["epoch"] == 0 and state.get("position") is None and not (tmp_path / "result.json").exists()
    resumed = _child(tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_final(uninterrupted, tmp_path)
    a, b = (json.loads((d / "result.json").read_text()) for d in (uninterrupted, tmp_path))
    assert a["epochs_run"] == b["epochs_run"] == 3 and a["value"] == b["value"]
    assert a["overfit_guard"]["pgd_acc"] == b["overfit_guard"]["pgd_acc"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(tmp_path, uninterrupted):
    """Mid-epoch checkpoints every 2 iterations; killed after iteration 3 of epoch 2, so the
    resumed run continues epoch 2 at its third batch (and must draw its third batch's crops and
    random starts, not the first's)."""
    every = ["RUNTIME.CHECKPOINT_EVERY_ITERS", "2"]
    killed = _child(tmp_path, epoch=1, batch=3, extra=every)
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = torch.load(tmp_path / LAST, weights_only=True)
    assert state["position"]["epoch"] == 1 and state["position"]["batches"] == 2 and state["epoch"] == 0
    assert state["iter"] == 4 + 2
    resumed = _child(tmp_path, extra=every)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _assert_same_final(uninterrupted, tmp_path)
    a, b = (json.loads((d / "result.json").read_text()) for d in (uninterrupted, tmp_path))
    assert a["value"] == b["value"] and b["epochs_run"] == 3


def _free_cfg(out, extra=()):
    return digits_pretrain_cfg(out, eps=0.05, norm="linf", epochs=3,
                               extra=FAST + ["ADV.METHOD", "free", "ADV.FREE_REPLAYS", "2", "ADV.GUARD", "off",
                                             "SOLVER.LR_STEP_EPOCHS", "2", *extra])


@pytest.mark.slow
def test_free_training_resumed_continues_its_perturbation(tmp_path, monkeypatch):
    """3 epochs with 2 replays: 2 passes, the second one half (12 optimizer steps, the lr drop after
    8); killed at the start of pass 2 and resumed, it ends with the uninterrupted run's weights,
    which needs pass 1's final perturbation back."""
    full = pretrain.run(_free_cfg(tmp_path / "full"))
    state = torch.load(tmp_path / "full" / LAST, weights_only=True)
    assert full["passes"] == 2 and state["iter"] == 3 * 4 and state["scheduler"]["last_epoch"] == 3
    assert int(state["model"]["bn1.num_batches_tracked"]) == 12
    undo = kill_in_epoch(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(_free_cfg(tmp_path / "resumed"))
    saved = torch.load(tmp_path / "resumed" / LAST, weights_only=True)
    assert saved["rank_states"][0]["step"]["delta"].abs().max() > 0
    undo()
    pretrain.run(_free_cfg(tmp_path / "resumed"), resume=True)
    _assert_same_final(tmp_path / "full", tmp_path / "resumed")


def _scripted_guard(monkeypatch, values):
    real = pretrain._guard_hook
    calls = []

    def hook(*args):
        h = real(*args)
        it = iter(values)
        h.measure = lambda: calls.append(1) or next(it)
        return h

    monkeypatch.setattr(pretrain, "_guard_hook", hook)
    return calls


@pytest.mark.slow
def test_guard_stop_survives_a_kill_and_resume(tmp_path, monkeypatch):
    """The guard fires after epoch 2 (50% -> 10%); the run is killed in its final evaluation; the
    resumed run trains no further, its record names the stop and model_final says it holds epoch
    1's weights (and does)."""
    cfg = digits_pretrain_cfg(tmp_path, eps=0.05, norm="linf", epochs=4, extra=FAST + ["DATA.NUM_WORKERS", "0"])
    _scripted_guard(monkeypatch, [50.0, 10.0])
    snap = {}
    real_epoch = EpochTrainer.run_epoch

    def run_epoch(self):
        out = real_epoch(self)
        snap[self.epoch + 1] = {k: v.clone() for k, v in self.model.state_dict().items()}
        return out

    monkeypatch.setattr(EpochTrainer, "run_epoch", run_epoch)

    def dying_eval(*a, **k):
        raise KeyboardInterrupt

    real_eval = pretrain.evaluate
    monkeypatch.setattr(pretrain, "evaluate", dying_eval)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(cfg)
    assert sorted(snap) == [1, 2] and not (tmp_path / "result.json").exists()
    monkeypatch.setattr(pretrain, "evaluate", real_eval)
    calls = _scripted_guard(monkeypatch, [])
    trained = []
    monkeypatch.setattr(EpochTrainer, "run_epoch", lambda self: trained.append(self.epoch) or real_epoch(self))
    rec = pretrain.run(cfg, resume=True)
    assert trained == [] and calls == []  # no further epoch, no further measurement
    g = rec["overfit_guard"]
    assert g["fired"] and g["stopped_after"] == 2 and g["best_epoch"] == 1
    assert rec["epochs_run"] == 2 and "catastrophic overfitting" in rec["stopped"] and rec["weights_epoch"] == 1
    from rdet.backbones import create_classifier

    assert torch.load(tmp_path / FINAL, weights_only=True)["rdet"]["weights_epoch"] == 1
    held = create_classifier("resnet18", 10, weights=str(tmp_path / FINAL)).state_dict()
    assert all(torch.equal(v, snap[1][k]) for k, v in held.items())
    assert not all(torch.equal(v, snap[2][k]) for k, v in held.items())


def test_resuming_a_finished_run_without_a_record_reports_its_epochs(tmp_path, monkeypatch):
    cfg = digits_pretrain_cfg(tmp_path, epochs=2, extra=FAST + ["ADV.GUARD", "off", "DATA.NUM_WORKERS", "0"])

    def dying_eval(*a, **k):
        raise KeyboardInterrupt

    real_eval = pretrain.evaluate
    monkeypatch.setattr(pretrain, "evaluate", dying_eval)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(cfg)
    monkeypatch.setattr(pretrain, "evaluate", real_eval)
    rec = pretrain.run(cfg, resume=True)
    assert rec["epochs_run"] == 2 and rec["weights_epoch"] == 2
    assert torch.load(tmp_path / FINAL, weights_only=True)["rdet"]["epoch"] == 1  # 0-based: the second epoch


def test_non_finite_loss_stops_with_one_line_and_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    import rdet.engine.steps as steps

    real, calls = steps._forward_loss, []

    def poisoned(trainer, x, y):
        logits, loss = real(trainer, x, y)
        calls.append(1)
        return logits, loss * float("nan") if len(calls) == 6 else loss  # epoch 2, iteration 2

    monkeypatch.setattr(steps, "_forward_loss", poisoned)
    args = ["--dataset", "digits", "--output-dir", str(tmp_path), "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16",
            "SOLVER.EPOCHS", "3", *FAST, "ADV.EPS", "0", "DATA.NUM_WORKERS", "0"]
    assert run_cli(pretrain_cli.main, args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "non-finite training loss in epoch 2, iteration 2" in err[0], err
    assert not (tmp_path / "result.json").exists() and not (tmp_path / FINAL).exists()
    state = torch.load(tmp_path / LAST, weights_only=True)
    assert state["epoch"] == 0 and all(torch.isfinite(v.float()).all() for v in state["model"].values())


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    cfg = digits_pretrain_cfg(tmp_path, epochs=3, extra=FAST + ["ADV.GUARD", "off", "DATA.NUM_WORKERS", "0"])
    real_save, saves = torch.save, []

    def disk_full(obj, f, *a, **k):
        saves.append(f)
        if len(saves) == 2:  # the second epoch's checkpoint: half written, then the disk is full
            Path(f).write_bytes(b"\0" * 1000)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(CheckpointError, match=r"last_checkpoint.pth \(disk full\): stopping; the previous checkpoint "
                                              r"there is intact") as e:
        pretrain.run(cfg)
    assert len(str(e.value).splitlines()) == 1
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(tmp_path / LAST, weights_only=True)["epoch"] == 0  # epoch 1's, loadable
    assert not list(tmp_path.glob(".*.tmp")) and not (tmp_path / "result.json").exists()
