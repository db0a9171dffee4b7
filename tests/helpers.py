"""Small, real configs for tests: scikit-learn's digits at 16x16, ResNet-18, a few epochs."""
from rdet.config import get_pretrain_cfg, get_transfer_cfg

_SMALL = ["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "16", "DATA.TEST_RESIZE", "16", "DATA.CROP_SCALE_MIN", "0.7",
          "DATA.NUM_WORKERS", "0", "SOLVER.BATCH_SIZE", "64", "MODEL.ARCH", "resnet18"]


def digits_pretrain_cfg(out, eps=0.0, norm="linf", epochs=4, lr=0.05, extra=()):
    cfg = get_pretrain_cfg()
    cfg.merge_from_list(_SMALL + ["SOLVER.BASE_LR", str(lr), "SOLVER.EPOCHS", str(epochs), "SOLVER.LR_STEP_EPOCHS",
                                  str(max(1, epochs - 1)), "ADV.NORM", norm, "ADV.EPS", str(eps), "ADV.EVAL_STEPS", "10",
                                  "OUTPUT_DIR", str(out), *extra])
    return cfg


def digits_transfer_cfg(out, mode="fixed", weights="", epochs=3, lr=0.01, extra=()):
    cfg = get_transfer_cfg()
    cfg.merge_from_list(_SMALL + ["SOLVER.BASE_LR", str(lr), "SOLVER.EPOCHS", str(epochs), "SOLVER.LR_STEP_EPOCHS",
                                  "2", "TRANSFER.MODE", mode, "MODEL.WEIGHTS", str(weights), "OUTPUT_DIR", str(out),
                                  *extra])
    return cfg


def kill_in_epoch(monkeypatch, n, exc=KeyboardInterrupt):
    """Make the trainer raise ``exc`` at the start of its ``n``-th epoch of this process (a kill in
    mid-run); the returned function undoes it, for the resumed run."""
    from rdet.engine import EpochTrainer

    real, calls = EpochTrainer.run_epoch, []

    def dying(self):
        calls.append(self.epoch)
        if len(calls) == n:
            raise exc
        return real(self)

    monkeypatch.setattr(EpochTrainer, "run_epoch", dying)
    return lambda: monkeypatch.setattr(EpochTrainer, "run_epoch", real)


def cli_refusal(main, capsys, *args):
    """A command's own ``main`` run in this process on ``args`` (what its console script and
    ``python -m rdet`` form call; test_packaging runs those with a bad flag): asserts exit 2 and
    one ``error:`` line on stderr, and returns that line."""
    code = main([str(a) for a in args])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    return lines[0]
