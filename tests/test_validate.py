"""Input checks before any work: each bad input is one RdetError line, and checking leaves no file."""
import os

import pytest
import torch

from rdet.config import get_evaluate_cfg, get_pretrain_cfg, get_transfer_cfg
from rdet.cli import run_cli
from rdet.core.errors import CheckpointError, ConfigError, DatasetError
from rdet.config import check_config_file
from rdet.config.schema import check_cfg
from rdet.tasks.checks import check_output_dir, check_weights_arg


def _one_line(excinfo):
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


def test_output_dir_writable_or_creatable_leaves_nothing(tmp_path):
    assert check_output_dir(tmp_path) == tmp_path
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path) == []  # no probe file, no created folder


def test_output_dir_refusals(tmp_path):
    f = tmp_path / "file.txt"
    f.write_text("x")
    with pytest.raises(ConfigError) as e:
        check_output_dir(f)
    assert "exists and is not a folder" in _one_line(e)
    with pytest.raises(ConfigError) as e:
        check_output_dir(f / "out")
    assert f"cannot be created: {f} is not a folder" in _one_line(e)
    with pytest.raises(ConfigError) as e:  # a folder nobody may create files in, even root
        check_output_dir("/proc/rdet_out/x")
    assert "cannot be created in /proc" in _one_line(e)
    assert sorted(os.listdir(tmp_path)) == ["file.txt"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_output_dir_read_only(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match="is not writable"):
            check_output_dir(ro)
        with pytest.raises(ConfigError, match="cannot be created in"):
            check_output_dir(ro / "sub")
    finally:
        ro.chmod(0o755)


def test_weights_arg(tmp_path):
    w = tmp_path / "w.pth"
    torch.save({}, w)
    assert check_weights_arg(str(w)) == "file"
    assert check_weights_arg("resnet50_l2_eps3") == "catalog"
    assert check_weights_arg("resnet50_linf_eps4.0") == "catalog"  # the release's own file stem
    with pytest.raises(CheckpointError) as e:
        check_weights_arg("resnet50_l2_eps33")
    assert "not a catalog model; did you mean resnet50_l2_eps3" in _one_line(e)
    with pytest.raises(CheckpointError) as e:
        check_weights_arg(str(tmp_path / "nope.pth"))
    assert "no such file and not a catalog model (python -m rdet backbones catalog" in _one_line(e)
    with pytest.raises(CheckpointError, match="is a folder"):
        check_weights_arg(str(tmp_path))
    with pytest.raises(CheckpointError, match="no weights given"):
        check_weights_arg("")


def test_config_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("_BASE_: base.yaml\nSOLVER:\n  EPOCHS: 3\n")
    (tmp_path / "base.yaml").write_text("SOLVER:\n  BASE_LR: 0.5\n  EPOCHS: 1\n")
    assert check_config_file(good) == {"SOLVER": {"BASE_LR": 0.5, "EPOCHS": 3}}
    bad = tmp_path / "bad.yaml"
    bad.write_text("SOLVER:\n  EPOCHS: 3\n  BASE_LR: [0.1\nDATA:\n  X: 1\n")
    with pytest.raises(ConfigError) as e:
        check_config_file(bad)
    assert _one_line(e).startswith(f"{bad}:") and "malformed YAML" in str(e.value)
    line = int(str(e.value).split(":")[1])
    assert 3 <= line <= 5  # the unclosed bracket's neighbourhood, 1-based
    with pytest.raises(ConfigError, match="no such config file"):
        check_config_file(tmp_path / "missing.yaml")
    broken_base = tmp_path / "child.yaml"
    broken_base.write_text("_BASE_: bad.yaml\n")
    with pytest.raises(ConfigError, match=rf"{bad}:\d+: malformed YAML"):
        check_config_file(broken_base)
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="KEY: value pairs, not a list"):
        check_config_file(tmp_path / "list.yaml")
    (tmp_path / "code.yaml").write_text("A: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match=r"code.yaml:1: malformed YAML"):
        check_config_file(tmp_path / "code.yaml")


def test_ranges():
    cfg = get_pretrain_cfg()
    check_cfg(cfg)
    check_cfg(get_transfer_cfg())
    check_cfg(get_evaluate_cfg())
    for key, value, msg in (("SOLVER.EPOCHS", -2, "SOLVER.EPOCHS must be >= 1, not -2"),
                            ("ADV.EPS", -0.5, "ADV.EPS must be >= 0, not -0.5"),
                            ("SOLVER.BASE_LR", 0.0, "SOLVER.BASE_LR must be > 0, not 0.0"),
                            ("SOLVER.BATCH_SIZE", 0, "SOLVER.BATCH_SIZE must be >= 1, not 0"),
                            ("SOLVER.MOMENTUM", 1.0, "SOLVER.MOMENTUM must be in [0, 1), not 1.0"),
                            ("ADV.GUARD_MARGIN", -5.0, "ADV.GUARD_MARGIN must be >= 0, not -5.0")):
        c = cfg.clone()
        c.merge_from_list([key, str(value)])
        with pytest.raises(ConfigError) as e:
            check_cfg(c)
        assert _one_line(e) == msg
    ev = get_evaluate_cfg()
    ev.merge_from_list(["ATTACK.EPS", "[0.5, -1.0]"])
    with pytest.raises(ConfigError, match=r"ATTACK.EPS items must be >= 0, not -1.0"):
        check_cfg(ev)
    check_cfg(ev, skip=["ATTACK.EPS"])
    c = cfg.clone()
    c.merge_from_list(["ADV.NORM", "l3"])
    with pytest.raises(ConfigError) as e:
        check_cfg(c)
    assert _one_line(e) == "ADV.NORM must be one of l2, linf, not 'l3'"


class _UnreadableAt3(torch.utils.data.Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        if i == 3:
            raise DatasetError("unreadable image /data/x/3.jpg: truncated")
        return torch.zeros(2)


def test_an_error_from_a_dataloader_worker_is_still_one_line(capsys):
    """torch re-raises a worker's exception with its whole traceback in the message; the CLI
    prints the original message alone and exits 2. The loader's worker process is gone when
    ``run_cli`` returns, not kept by the error's traceback until a garbage collection (whose
    loader clean-up then waits 5 s)."""
    import multiprocessing

    def main(argv):
        for _ in torch.utils.data.DataLoader(_UnreadableAt3(), batch_size=2, num_workers=1):
            pass

    assert not multiprocessing.active_children()
    assert run_cli(main, []) == 2
    err = capsys.readouterr().err
    assert err == "error: unreadable image /data/x/3.jpg: truncated\n"
    assert not multiprocessing.active_children()
