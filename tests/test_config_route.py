"""One config route for every command and study kind (defaults -> file -> overrides -> every key's
rule), one ``KEY VALUE`` placement rule (anywhere), one dataset-root flag, and the machine check
that belongs with the config checks (bf16 on a CPU that emulates it)."""
import textwrap

import pytest

from rdet.cli import split_overrides
from rdet.cli.classify import main as classify_main
from rdet.cli.evaluate import main as evaluate_main
from rdet.cli.pretrain import main as pretrain_main
from rdet.cli.select import main as select_main
from rdet.config import build_config, get_pretrain_cfg
from rdet.config import hardware
from rdet.core.errors import ConfigError
from rdet.study.spec import load_study

from helpers import cli_refusal

BAD = ["SOLVER.BATCH_SIZE", "0"]
LINE = "error: SOLVER.BATCH_SIZE must be >= 1, not 0"


@pytest.mark.parametrize("main, args", [(pretrain_main, []), (classify_main, []),
                                        (evaluate_main, ["--weights", "resnet18_l2_eps0"]),
                                        (select_main, ["--dataset", "digits"])],
                         ids=["pretrain", "classify", "evaluate", "select"])
def test_every_cli_gives_the_same_line_for_an_out_of_range_value(main, args, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_refusal(main, capsys, *args, *BAD) == LINE
    # the overrides may stand before the flags, too
    assert cli_refusal(main, capsys, *BAD, *args) == LINE
    assert list(tmp_path.iterdir()) == []  # refused before any work: nothing written


def test_select_views_zero_is_refused(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli_refusal(select_main, capsys, "--dataset", "digits", "SELECT.VIEWS", "0") == \
        "error: SELECT.VIEWS must be >= 1, not 0"


def test_key_value_pairs_anywhere_even_after_a_many_valued_flag(capsys, tmp_path, monkeypatch):
    assert split_overrides(["--eps", "0.1", "0.2", "ATTACK.STEPS", "3", "--norm", "l2", "MODEL.TIMM.ARCH", "x"]) == \
        (["--eps", "0.1", "0.2", "--norm", "l2"], ["ATTACK.STEPS", "3", "MODEL.TIMM.ARCH", "x"])
    monkeypatch.chdir(tmp_path)
    line = cli_refusal(evaluate_main, capsys, "--weights", "resnet18_l2_eps0", "--eps", "0.1", "0.2", "ATTACK.STEPS",
                       "0", "--norm", "l2")
    assert line == "error: ATTACK.STEPS must be >= 1, not 0"


def test_data_root_is_every_commands_flag_and_data_its_old_spelling(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for main, args in ((pretrain_main, []), (evaluate_main, ["--weights", "resnet18_l2_eps0"])):
        assert cli_refusal(main, capsys, *args, "--data-root", str(tmp_path), *BAD) == LINE
        code = main([*args, "--data", str(tmp_path), *BAD])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == ["note: --data is the old spelling of --data-root", LINE]


def _study(tmp_path, body: str):
    path = tmp_path / "study.yaml"
    path.write_text(f"output_dir: {tmp_path / 'out'}\n" + textwrap.dedent(body))
    return path


BACKBONES = """
backbones: [{name: r18, weights: resnet18_l2_eps0}]
"""


@pytest.mark.parametrize("section, cell", [
    ("pretrain: {config: configs/pretrain_demo.yaml, runs: [{name: a, eps: 0}], opts: [%s]}", "pretrain/a"),
    (BACKBONES + "classification: {datasets: [digits], opts: [%s]}", "classify/digits/r18/fixed/lr0.01_seed0"),
    (BACKBONES + "robustness: {dataset: digits, opts: [%s]}", "robustness/r18"),
    (BACKBONES + "select: {dataset: digits, opts: [%s]}", "select/r18"),
], ids=["pretrain", "classify", "robustness", "select"])
def test_every_kind_checks_its_cells_config_when_the_study_loads(tmp_path, section, cell):
    path = _study(tmp_path, section % "SOLVER.BATCH_SIZE, 0")
    with pytest.raises(ConfigError) as e:
        load_study(path)
    assert str(e.value) == f"{path}: cell {cell}: SOLVER.BATCH_SIZE must be >= 1, not 0"
    assert not (tmp_path / "out").exists()


def test_a_typo_in_a_late_cell_fails_at_load_before_the_first_cell_runs(tmp_path):
    """The pretraining cells come first; the typo sits in a classification cell."""
    from rdet.cli.study import main as study_main

    path = _study(tmp_path, """
    pretrain: {config: configs/pretrain_demo.yaml, runs: [{name: a, eps: 0}]}
    classification: {datasets: [digits], opts: [SOLVER.EPOCH, 1]}
    """)
    with pytest.raises(ConfigError, match=r"cell classify/digits/a/fixed/lr0.01_seed0: .*SOLVER.EPOCH"):
        load_study(path)
    assert study_main([str(path)]) == 2
    assert not (tmp_path / "out").exists()
    # a detection cell's detectron2 config is built when the study loads too
    path = _study(tmp_path, BACKBONES + "detection: [{name: det, config: configs/demo_mask_r18_fpn.yaml, "
                                        "opts: [SOLVER.MAX_ITR, 10]}]\n")
    with pytest.raises(ConfigError, match=r"cell detect/det/r18: .*SOLVER.MAX_ITR"):
        load_study(path)
    path = _study(tmp_path, BACKBONES + "segmentation: [{name: sem, config: configs/demo_sem_r18_fpn.yaml, "
                                        "opts: [SOLVER.OPTIMIZER, AdamW]}]\n")
    with pytest.raises(ConfigError, match=r"cell segment/sem/r18/s0: .*SOLVER.OPTIMIZER must be one of sgd, adamw"):
        load_study(path)


def test_bf16_on_a_cpu_that_emulates_it_is_refused_unless_insisted(monkeypatch, caplog):
    def cfg(*opts):
        return build_config(get_pretrain_cfg(), None, None, ["RUNTIME.DEVICE", "cpu", "RUNTIME.AMP", "bf16", *opts])

    monkeypatch.setattr(hardware, "cpu_model_and_flags", lambda: ("AMD EPYC 7B13", frozenset({"avx2", "fma"})))
    with pytest.raises(ConfigError) as e:
        cfg()
    assert "AMD EPYC 7B13: no AVX512-BF16 or AMX" in str(e.value) and "RUNTIME.ALLOW_SLOW_AMP True" in str(e.value)
    assert "\n" not in str(e.value)
    with caplog.at_level("WARNING", logger="rdet.config.hardware"):
        cfg("RUNTIME.ALLOW_SLOW_AMP", "True")
    assert "running anyway" in caplog.text
    monkeypatch.setattr(hardware, "cpu_model_and_flags", lambda: ("Intel Xeon", frozenset({"avx512_bf16", "amx_bf16"})))
    cfg()  # native bf16: no complaint
    build_config(get_pretrain_cfg(), None, None, ["RUNTIME.DEVICE", "cpu"])  # fp32: never
