"""The one epoch loop and its parts: steps (free training's accounting), hooks (the overfitting
guard, periodic evaluation), run signatures on resume, fp16 loss scaling in the checkpoint."""
import pytest
import torch
from helpers import digits_pretrain_cfg, digits_transfer_cfg, kill_in_epoch

from rdet.tasks import pretrain
from rdet.engine import LAST, EpochTrainer, Runtime
from rdet.engine.hooks import OverfitGuard, PeriodicEval, final_and_best
from rdet.engine.steps import StandardStep
from rdet.core.errors import CheckpointError

SMALL = ["DATA.MAX_TRAIN", "256", "DATA.MAX_TEST", "32", "ADV.EVAL_STEPS", "1"]


def _toy_trainer(epochs, hooks=()):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(2)]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    tr = EpochTrainer(model, data, opt, torch.optim.lr_scheduler.StepLR(opt, 10), Runtime(torch.device("cpu")),
                      StandardStep(), epochs)
    tr.register_hooks(hooks)
    return tr


def test_overfit_guard_fires_on_a_collapse_and_keeps_the_best_weights():
    scripted = iter([40.0, 55.0, 50.0, 3.0, 60.0])  # epoch 4: PGD accuracy collapses
    snapshots = {}

    class Snapshot(PeriodicEval):  # records the weights each epoch ends with
        def after_epoch(self):
            snapshots[self.trainer.epoch + 1] = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}

    guard = OverfitGuard(lambda: next(scripted), margin=20.0)
    tr = _toy_trainer(5, [Snapshot(None, 0), guard])
    tr.train()
    assert tr.epoch == 3 and tr.stop_reason and "catastrophic overfitting" in tr.stop_reason  # stopped after epoch 4
    for k, v in tr.model.state_dict().items():
        assert torch.equal(v, snapshots[2][k]), k  # epoch 2's weights (55%) are back
    assert not torch.equal(snapshots[2]["weight"], snapshots[4]["weight"])
    s = guard.summary()
    assert s["fired"] and s["best_epoch"] == 2 and s["last_pgd_acc"] == 3.0 and s["stopped_after"] == 4


def test_overfit_guard_quiet_without_a_collapse():
    scripted = iter([40.0, 55.0, 50.0, 45.0])
    guard = OverfitGuard(lambda: next(scripted), margin=20.0)
    tr = _toy_trainer(4, [guard])
    tr.train()
    assert tr.epoch == 3 and tr.stop_reason is None and not guard.summary()["fired"]


def test_periodic_eval_keeps_final_and_best():
    """The robustness library's epochs: 0-based ``epoch % every == 0`` or the last, i.e. after
    epochs 1, 3, 5 and 6 of 6 with every 2 (1, 6, ..., 146, 150 of 150 with every 5)."""
    scores = iter([{"top1": 50.0}, {"top1": 70.0}, {"top1": 65.0}, {"top1": 60.0}])
    tr = _toy_trainer(6, [PeriodicEval(lambda: next(scores), every=2)])
    tr.train()
    assert [e for e, _ in tr.history["evals"]] == [1, 3, 5, 6]
    r = final_and_best(tr.history, "top1")
    assert r["final"]["top1"] == 60.0 and r["best_value"] == 70.0 and r["best_epoch"] == 3
    tr = _toy_trainer(150, [PeriodicEval(lambda: {"top1": 1.0}, every=5)])
    tr.train()
    done = [e for e, _ in tr.history["evals"]]
    assert done[:3] == [1, 6, 11] and done[-2:] == [146, 150] and len(done) == 31


def test_free_training_epoch_accounting(tmp_path):
    """free with 2 replays and 4 epochs: 2 passes over the data, each batch replayed twice, so 4
    epochs' worth of optimizer steps (= BatchNorm updates) and of lr schedule."""
    cfg = digits_pretrain_cfg(tmp_path, eps=0.03, norm="linf", epochs=4,
                              extra=SMALL + ["ADV.METHOD", "free", "ADV.FREE_REPLAYS", "2", "SOLVER.LR_STEP_EPOCHS", "3",
                                             "ADV.GUARD", "off"])
    rec = pretrain.run(cfg)
    state = torch.load(tmp_path / LAST, weights_only=True)
    assert rec["passes"] == 2 and rec["epochs_run"] == 2 and state["epoch"] == 1
    assert int(state["model"]["bn1.num_batches_tracked"]) == 2 * 2 * (256 // 64)
    assert state["scheduler"]["last_epoch"] == 4 and rec["training"]["method"] == "free"


def test_resume_refuses_a_checkpoint_of_other_settings(tmp_path):
    pretrain.run(digits_pretrain_cfg(tmp_path, eps=0.0, epochs=1, extra=SMALL))
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(CheckpointError, match=r"ADV.EPS 0.0 in the checkpoint vs 1.0 now.*SOLVER.EPOCHS"):
        pretrain.run(digits_pretrain_cfg(tmp_path, eps=1.0, epochs=2, extra=SMALL), resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    rec = pretrain.run(digits_pretrain_cfg(tmp_path, eps=1.0, epochs=1, extra=SMALL + ["RUNTIME.RESUME_MISMATCH",
                                                                                          "restart"]), resume=True)
    assert rec["backbone"]["eps"] == 1.0 and rec["robust_top1"] is not None


def test_resume_adds_wall_time_and_removes_stale_temps(tmp_path):
    pretrain.run(digits_pretrain_cfg(tmp_path, eps=0.0, epochs=1, extra=SMALL))
    state = torch.load(tmp_path / LAST, weights_only=True)
    trained_for = state["elapsed_s"]  # up to the epoch's end
    loop_time = state["history"]["train_time_s"]  # the training loop alone
    stale = tmp_path / ".last_checkpoint.pth.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    again = pretrain.run(digits_pretrain_cfg(tmp_path, eps=0.0, epochs=1, extra=SMALL), resume=True)
    assert not stale.exists()
    assert trained_for > 0 and again["wall_time_s"] > trained_for  # the first segment counts too
    assert 0 < again["train_time_s"] == loop_time < trained_for  # carried over, evaluations excluded


@pytest.mark.slow
def test_fp16_loss_scaler_state_survives_a_kill(tmp_path, monkeypatch):
    import rdet.engine.rundir as rundir

    # one step of 16 images an epoch: fp16 backward is slow on a CPU (22 s a step of 64 images here)
    cfg = digits_pretrain_cfg(tmp_path, eps=0.0, epochs=2, extra=SMALL + ["RUNTIME.AMP", "fp16", "DATA.MAX_TRAIN", "16",
                                                                         "SOLVER.BATCH_SIZE", "16"])
    undo = kill_in_epoch(monkeypatch, 2)  # killed in epoch 2
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(cfg)
    saved = torch.load(tmp_path / LAST, weights_only=True)["scaler"]
    assert saved["scale"] > 0 and "_growth_tracker" in saved
    undo()
    seen, real_restore = {}, rundir.restore

    def spy(state, model, trainer):
        real_restore(state, model, trainer)
        seen.update(trainer.scaler.state_dict())

    monkeypatch.setattr(rundir, "restore", spy)
    rec = pretrain.run(cfg, resume=True)
    assert seen == saved and rec["amp"] == "fp16" and rec["epochs_run"] == 2


def test_free_training_90_epochs_4_replays_steps_and_lr_drops():
    """SOLVER.EPOCHS 90, ADV.FREE_REPLAYS 4, 3 batches an epoch: exactly 90 * 3 optimizer steps
    (22 full passes and a partial 23rd, whose second batch gets 2 of its 4 replays), and the lr
    drops right after the steps of epochs 30 and 60 (not 32 and 60: ceil(90 / 4) = 23 whole passes
    would be 92 epochs' worth with drops after passes 8 and 15)."""
    from rdet.config import get_pretrain_cfg
    from rdet.engine.build import build_optimizer, build_scheduler
    from rdet.engine.steps import FreeStep, passes_and_schedule

    cfg = get_pretrain_cfg()
    cfg.merge_from_list(["SOLVER.EPOCHS", "90", "ADV.FREE_REPLAYS", "4", "ADV.EPS", "0.1", "ADV.METHOD", "free"])
    passes, replays = passes_and_schedule(cfg.ADV, cfg.SOLVER.EPOCHS)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    data = [(torch.rand(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
    opt = build_optimizer(model.parameters(), cfg)
    lrs = []

    class Recording(FreeStep):
        def __call__(self, trainer, x, y):
            real = trainer.optimize

            def optimize(loss):
                lrs.append(trainer.optimizer.param_groups[0]["lr"])
                real(loss)

            trainer.optimize = optimize
            try:
                return super().__call__(trainer, x, y)
            finally:
                del trainer.optimize

    tr = EpochTrainer(model, data, opt, build_scheduler(opt, cfg), Runtime(torch.device("cpu")),
                      Recording(0.1, "linf", replays), passes, total_steps=90 * len(data))
    tr.train()
    assert passes == 23 and tr.epoch == 22 and tr.iter == len(lrs) == 270
    drops = [i for i in range(1, len(lrs)) if lrs[i] < lrs[i - 1]]
    assert drops == [30 * 3, 60 * 3]  # the first step at the lower lr is the first of epoch 31, of epoch 61
    assert lrs[0] == cfg.SOLVER.BASE_LR and lrs[-1] == pytest.approx(cfg.SOLVER.BASE_LR * 0.01)
    assert tr.scheduler.last_epoch == 90


def test_mid_epoch_checkpoints_by_wall_time_and_by_iterations():
    """RUNTIME.CHECKPOINT_MINUTES: a due checkpoint is written at the next log boundary inside the
    epoch (never at its last batch: the epoch's own checkpoint follows); CHECKPOINT_EVERY_ITERS
    every n batches. Each call sees the epoch's position."""
    torch.manual_seed(0)
    for kwargs, expected in (({"checkpoint_minutes": 1e-9}, [(0, 1), (0, 2), (1, 1), (1, 2)]),
                             ({"checkpoint_every_iters": 2}, [(0, 2), (1, 2)]),
                             ({}, [])):
        model = torch.nn.Linear(4, 3)
        data = [(torch.randn(8, 4), torch.randint(0, 3, (8,))) for _ in range(3)]
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        seen = []
        tr = EpochTrainer(model, data, opt, torch.optim.lr_scheduler.StepLR(opt, 10), Runtime(torch.device("cpu")),
                          StandardStep(), 2, log_every=1, checkpoint=lambda: seen.append(
                              (tr.position()["epoch"], tr.position()["batches"])), **kwargs)
        tr.train()
        assert seen == expected, kwargs


@pytest.mark.parametrize("task", ["pretrain", "transfer"])
def test_loader_workers_are_gone_when_a_run_returns(tmp_path, task):
    """With the garbage collector off, as between its passes: a run's persistent loader workers
    end when it returns. (Left to the collector, each worker of a loader held in the trainer's
    reference cycles costs torch's 5 s join timeout; a study's local cells pay it cell after cell.)"""
    import gc
    import multiprocessing

    from rdet.tasks import transfer

    extra = ["DATA.NUM_WORKERS", "2", "DATA.MAX_TRAIN", "128", "DATA.MAX_TEST", "64"]
    gc.collect()
    before = set(multiprocessing.active_children())
    gc.disable()
    try:
        if task == "pretrain":
            pretrain.run(digits_pretrain_cfg(tmp_path, epochs=2, extra=extra))
        else:
            transfer.run(digits_transfer_cfg(tmp_path, mode="full", epochs=2, extra=extra))
        left = set(multiprocessing.active_children()) - before
    finally:
        gc.enable()
    assert not left, left
