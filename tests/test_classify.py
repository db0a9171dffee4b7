"""Transfer: fixed-feature leaves the backbone bit-identical (weights and BN buffers), full-network
changes it, the cached-feature path beats chance clearly, resume works, bad input fails cleanly."""
import pytest
import torch
from helpers import cli_refusal, digits_transfer_cfg, kill_in_epoch

from rdet.cli.classify import main as classify_main
from rdet.tasks import transfer as classify
from rdet.engine import LAST


def _body(path):
    sd = torch.load(path, weights_only=True)["model"]
    return {k: v for k, v in sd.items() if not k.startswith("fc.")}


@pytest.fixture(scope="module")
def weights(digits_pretrained):
    return digits_pretrained[1] / "model_final.pth"


def test_fixed_leaves_backbone_bit_identical(tmp_path, weights):
    cfg = digits_transfer_cfg(tmp_path, "fixed", weights, epochs=2,
                              extra=["TRANSFER.CACHE_FEATURES", "False", "DATA.MAX_TRAIN", "256"])
    classify.run(cfg)
    before, after = _body(weights), _body(tmp_path / LAST)
    assert set(before) == set(after) and any("running_mean" in k for k in after)
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_full_changes_backbone(tmp_path, weights):
    cfg = digits_transfer_cfg(tmp_path, "full", weights, epochs=1, extra=["DATA.MAX_TRAIN", "256"])
    classify.run(cfg)
    before, after = _body(weights), _body(tmp_path / LAST)
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert "conv1.weight" in changed and "layer4.1.bn2.running_mean" in changed


def test_cached_fixed_feature_beats_chance(tmp_path, weights):
    rec = classify.run(digits_transfer_cfg(tmp_path, "fixed", weights, epochs=10, lr=0.01,
                                           extra=["TRANSFER.CACHE_FEATURES", "True", "TRANSFER.CACHE_VIEWS", "2"]))
    assert rec["protocol"] == "feature-cache (2 views)" and rec["metric"] == "top1"
    assert rec["value"] > 60, rec["value"]  # 10 classes: chance is 10%
    assert (tmp_path / "result.json").is_file()


def test_resume_after_kill(tmp_path, weights, monkeypatch):
    extra = ["DATA.MAX_TRAIN", "192", "DATA.MAX_TEST", "64", "SOLVER.LR_STEP_EPOCHS", "1"]
    full = classify.run(digits_transfer_cfg(tmp_path / "a", "full", weights, epochs=3, extra=extra))
    undo = kill_in_epoch(monkeypatch, 2)  # killed in epoch 2
    with pytest.raises(KeyboardInterrupt):
        classify.run(digits_transfer_cfg(tmp_path / "b", "full", weights, epochs=3, extra=extra))
    assert not (tmp_path / "b" / "result.json").exists()
    undo()
    resumed = classify.run(digits_transfer_cfg(tmp_path / "b", "full", weights, epochs=3, extra=extra), resume=True)
    state = torch.load(tmp_path / "b" / LAST, weights_only=True)
    assert state["epoch"] == 2 and state["scheduler"]["last_epoch"] == 3
    a, b = _body(tmp_path / "a" / LAST), _body(tmp_path / "b" / LAST)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)
    assert resumed["value"] == pytest.approx(full["value"])


@pytest.mark.parametrize("args,match", [
    (["--dataset", "cifar10", "--data-root", "/nonexistent"], "cifar-10-batches-py"),
    (["--dataset", "nope"], "unknown dataset"),
    (["--dataset", "digits", "--weights", "/nonexistent.pth"], "no such file"),
    (["--dataset", "digits", "--arch", "resnet9"], "unknown architecture"),
])
def test_bad_inputs(tmp_path, capsys, args, match):
    """The command's own main, in this process (test_packaging runs the console script and the
    ``python -m`` forms): one line, exit 2, nothing written."""
    out = tmp_path / "o"
    assert match in cli_refusal(classify_main, capsys, *args, "--output-dir", out)
    assert not out.exists()


def test_paper_config_runs_the_per_epoch_protocol_and_records_final_and_best(tmp_path, weights):
    from rdet.config import CONFIG_DIR, get_transfer_cfg, merge_config

    paper = merge_config(get_transfer_cfg(), str(CONFIG_DIR / "classify_paper.yaml"))
    assert paper.TRANSFER.CACHE_FEATURES is False and paper.SOLVER.EPOCHS == 150 and paper.TRANSFER.EVAL_EVERY == 5
    rec = classify.run(digits_transfer_cfg(tmp_path, "fixed", weights, epochs=4,
                                           extra=["DATA.MAX_TRAIN", "200", "TRANSFER.EVAL_EVERY", "2"]))
    assert rec["protocol"] == "per-epoch" and rec["reported"] == "final epoch"
    # the robustness library's epochs: 0-based epoch % EVAL_EVERY == 0, and the last
    assert [e for e, _ in rec["evaluations"]] == [1, 3, 4] and rec["value"] == rec["evaluations"][-1][1]
    assert rec["best_value"] == max(v for _, v in rec["evaluations"])


def test_class_mismatch_is_one_line(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "data"
    for split, classes in (("train", ("cat", "coffee", "rocket")), ("test", ("cat", "rocket"))):
        for c in classes:
            (root / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (8, 8), (i * 40, 10, 20)).save(root / split / c / f"{i}.png")
    out = tmp_path / "o"
    assert "coffee" in cli_refusal(classify_main, capsys, "--dataset", "imagefolder", "--data-root", root,
                                   "--output-dir", out)
    assert not out.exists()
