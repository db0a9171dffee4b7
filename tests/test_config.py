"""Configs: paper defaults, YAML with _BASE_, KEY VALUE overrides, and one-line errors."""
import pytest

from rdet.config import get_pretrain_cfg, get_transfer_cfg, merge_config
from rdet.core.errors import ConfigError


def test_paper_defaults():
    t, p = get_transfer_cfg(), get_pretrain_cfg()
    assert (t.SOLVER.BATCH_SIZE, t.SOLVER.EPOCHS, t.SOLVER.LR_STEP_EPOCHS, t.SOLVER.WEIGHT_DECAY) == (64, 150, 50, 5e-4)
    assert list(t.TRANSFER.LR_GRID) == [0.01, 0.001]
    assert (p.SOLVER.BATCH_SIZE, p.SOLVER.EPOCHS, p.SOLVER.LR_STEP_EPOCHS, p.SOLVER.BASE_LR) == (512, 90, 30, 0.1)
    assert p.ADV.STEPS == 3 and p.ADV.STEP_SIZE_FACTOR == pytest.approx(2 / 3)


def test_yaml_base_and_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("SOLVER:\n  EPOCHS: 7\nMODEL:\n  ARCH: resnet50\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nSOLVER:\n  BASE_LR: 0.5\n")
    cfg = merge_config(get_transfer_cfg(), str(tmp_path / "child.yaml"), ["SOLVER.EPOCHS", "3", "SEED", "4"])
    assert (cfg.SOLVER.EPOCHS, cfg.SOLVER.BASE_LR, cfg.MODEL.ARCH, cfg.SEED) == (3, 0.5, "resnet50", 4)


@pytest.mark.parametrize("opts,match", [(["SOLVER.NOPE", "1"], "bad override"), (["SEED"], "KEY VALUE pairs")])
def test_bad_overrides(opts, match):
    with pytest.raises(ConfigError, match=match):
        merge_config(get_transfer_cfg(), None, opts)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        merge_config(get_transfer_cfg(), str(tmp_path / "nope.yaml"))
