"""Configs: paper defaults, YAML with _BASE_, KEY VALUE overrides, and one-line errors."""
import pytest

from rdet.config import get_evaluate_cfg, get_pretrain_cfg, get_select_cfg, get_transfer_cfg, merge_config
from rdet.config.schema import SCHEMA, check_cfg, flat_items, run_signature
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


DEFAULTS = (get_pretrain_cfg, get_transfer_cfg, get_evaluate_cfg, get_select_cfg)


@pytest.mark.parametrize("make", DEFAULTS, ids=lambda f: f.__name__)
def test_every_key_has_a_rule_and_a_signature_decision(make):
    """A key added to a default config without deciding its check and whether it belongs to the
    resume signature fails here; every default passes its own rules."""
    cfg = make()
    missing = [k for k, _ in flat_items(cfg) if k not in SCHEMA]
    assert not missing, f"keys without a rule in rdet/config/schema.py: {missing}"
    check_cfg(cfg)
    for key, rule in SCHEMA.items():
        assert rule.sig in (True, False, "eval"), key
        assert rule.free or rule.choices is not None or rule.lo is not None or rule.hi is not None, key


def test_schema_lists_no_key_that_no_default_has():
    known = {k for make in DEFAULTS for k, _ in flat_items(make())}
    assert set(SCHEMA) - known == set()


def test_signature_holds_what_defines_a_run_only():
    sig = run_signature(get_pretrain_cfg())
    assert {"ADV.EPS", "SOLVER.BASE_LR", "SEED", "MODEL.ARCH", "DATA.MAX_TRAIN"} <= set(sig)
    assert not {"DATA.ROOT", "DATA.NUM_WORKERS", "RUNTIME.AMP", "OUTPUT_DIR", "ADV.EVAL_STEPS"} & set(sig)


def test_an_evaluation_resumes_on_the_same_table():
    """Robust evaluation's signature is the schema's (no hand-kept list): the attacks, the test
    preprocessing and the clean pass's precision count for it, and never for a training run."""
    from rdet.config import get_evaluate_cfg

    ev = run_signature(get_evaluate_cfg(), evaluation=True)
    assert {"ATTACK.EPS", "ATTACK.TYPES", "ATTACK.AA_N_ITER", "DATA.TEST_INTERPOLATION", "DATA.TEST_CROP",
            "RUNTIME.AMP", "EVAL.SUBSET", "MODEL.WEIGHTS", "SEED"} <= set(ev)
    assert not {"DATA.ROOT", "DATA.NUM_WORKERS", "OUTPUT_DIR"} & set(ev)
    assert not {"DATA.TEST_INTERPOLATION", "RUNTIME.AMP"} & set(run_signature(get_pretrain_cfg()))


def test_an_integer_for_a_float_key_is_that_float(tmp_path):
    """``ADV.EPS 1`` is L2 eps 1 as the paper writes it (yacs alone calls it a type mismatch), in
    overrides, in files and in lists; a negative one is a range error naming the range."""
    cfg = merge_config(get_pretrain_cfg(), None, ["ADV.EPS", "1", "SOLVER.BASE_LR", "1"])
    assert cfg.ADV.EPS == 1.0 and isinstance(cfg.ADV.EPS, float) and isinstance(cfg.SOLVER.BASE_LR, float)
    (tmp_path / "c.yaml").write_text("ADV:\n  EPS: 3\nSOLVER:\n  EPOCHS: 2\n")
    cfg = merge_config(get_pretrain_cfg(), str(tmp_path / "c.yaml"))
    assert cfg.ADV.EPS == 3.0 and isinstance(cfg.ADV.EPS, float) and cfg.SOLVER.EPOCHS == 2
    ev = merge_config(get_evaluate_cfg(), None, ["ATTACK.EPS", "[1, 0.5]"])
    assert list(ev.ATTACK.EPS) == [1.0, 0.5] and all(isinstance(e, float) for e in ev.ATTACK.EPS)
    neg = merge_config(get_pretrain_cfg(), None, ["ADV.EPS", "-1"])
    with pytest.raises(ConfigError, match=r"^ADV.EPS must be >= 0, not -1.0$"):
        check_cfg(neg)
    with pytest.raises(ConfigError, match="bad override"):  # a float for an int key stays refused
        merge_config(get_pretrain_cfg(), None, ["SOLVER.EPOCHS", "2.5"])
