"""timm's ConvNeXt, Swin and ViT in rdet: registry metadata that matches the built networks; the
release layouts (RobustBench, Singh et al., old timm Swin, plain timm / ARES) read with
weights_only and computing the same logits as the model they were written from; an arch mismatch
refused in one line before anything is written; MODEL.BN refused on LayerNorm models; the
optimizer recipes; and (slow) pretrain / classify fixed and full / evaluate / select on the
offline digits at 32 px for the smallest ConvNeXt, Swin and ViT. Random weights stand in for
released ones; nothing downloads."""
import dataclasses
import hashlib
import json
import re
import shutil
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn

from rdet.backbones import CATALOG, create_classifier, get_spec, list_backbones, load_checkpoint
from rdet.backbones.timm_models import ConvStem
from rdet.config import CONFIG_DIR, get_evaluate_cfg, get_transfer_cfg, merge_config
from rdet.core.errors import ArchError, CheckpointError
from rdet.engine.optim import build_optimizer, build_scheduler, lr_factor

SMALLEST = ("convnext_atto", "swin_tiny", "vit_tiny")


def _timm_net(arch, seed=0):
    """The registry builder's network (timm, random weights) for 1000 classes, in eval mode."""
    torch.manual_seed(seed)
    return get_spec(arch).builder(1000).eval()


class _ImageNormalizer(nn.Module):
    """RobustBench's ImageNormalizer: buffers ``mean``/``std`` of shape (1, 3, 1, 1)."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


def _robustbench_model(net, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)):
    return nn.Sequential(OrderedDict(normalize=_ImageNormalizer(mean, std), model=net)).eval()


def _x(n=2, size=32, seed=1):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- the registry ------------------------------------------------------------------------------------
def test_families_and_their_specs():
    assert {"convnext_atto", "convnext_femto", "convnext_pico", "convnext_nano", "convnext_tiny", "convnext_small",
            "convnext_base", "convnext_large", "convnext_tiny_convstem", "convnext_small_convstem",
            "convnext_base_convstem", "convnext_large_convstem"} == set(list_backbones("convnext"))
    assert set(list_backbones("swin")) == {"swin_tiny", "swin_small", "swin_base", "swin_large"}
    assert set(list_backbones("vit")) == {"vit_tiny", "vit_small", "vit_base", "vit_small_convstem",
                                          "vit_base_convstem"}
    for arch in list_backbones("convnext") + list_backbones("swin") + list_backbones("vit"):
        s = get_spec(arch)
        assert not s.batchnorm and s.interpolation == "bicubic" and s.crop_pct == pytest.approx(0.875)
        assert s.recipe == ("adamw_cosine_lld" if s.family == "vit" else "adamw_cosine")
    assert get_spec("resnet50").recipe == "paper_sgd" and get_spec("resnet50").batchnorm


@pytest.mark.parametrize("arch", SMALLEST + ("convnext_tiny_convstem",))
def test_spec_geometry_is_the_networks(arch):
    """Feature dim, classifier and each stage's stride/channels as timm's own feature_info says."""
    spec, net = get_spec(arch), _timm_net(arch)
    info = {f["module"]: (f["reduction"], f["num_chs"]) for f in net.feature_info}
    assert [(st.module, st.stride, st.channels) for st in spec.stages] == [
        (st.module, *info[st.module]) for st in spec.stages]
    assert net.get_submodule(spec.classifier).in_features == spec.feature_dim
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


def test_convstem_names_and_strides_are_singh_et_al():
    """The release's tensor names (``stem.stem.<i>``, ``patch_embed.proj.stem.<i>``) and strides."""
    cnx, vit = get_spec("convnext_base_convstem").builder(10), get_spec("vit_base_convstem").builder(10)
    assert isinstance(cnx.stem, ConvStem) and isinstance(vit.patch_embed.proj, ConvStem)
    assert [k for k in cnx.state_dict() if k.startswith("stem.")][::2] == [
        f"stem.stem.{i}.weight" for i in (0, 1, 3, 4, 6, 7)]
    assert vit.state_dict()["patch_embed.proj.stem.12.weight"].shape == (768, 384, 1, 1)
    x = torch.rand(1, 3, 64, 64)
    assert cnx.stem(x).shape == (1, 128, 16, 16) and vit.patch_embed.proj(x).shape == (1, 768, 4, 4)


@pytest.mark.parametrize("arch", ("swin_tiny", "vit_tiny"))
def test_small_and_native_inputs_work(arch):
    model = create_classifier(arch, 5).eval()
    with torch.no_grad():
        assert model(_x(1, 32)).shape == (1, 5) and model(_x(1, 64)).shape == (1, 5)


# --- checkpoint layouts --------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", SMALLEST)
def test_robustbench_layout_loads_with_weights_only_and_gives_the_same_logits(tmp_path, arch):
    rb = _robustbench_model(_timm_net(arch))
    path = tmp_path / "rb.pt"
    torch.save(rb.state_dict(), path)
    assert {"normalize.mean", "normalize.std"} <= set(torch.load(path, weights_only=True))
    loaded = load_checkpoint(path)  # arch sniffed from names and shapes
    assert loaded.arch == arch and loaded.meta["format"] == "robustbench"
    model = create_classifier(arch, 1000, weights=str(path)).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), rb(_x()), rtol=1e-5, atol=1e-5)  # its normalisation too


def test_plain_timm_state_dict_with_module_prefix(tmp_path):
    """ARES / RobustBench's downloaded files: a bare timm state dict (DataParallel names are fine);
    the normaliser is the arch's default (ImageNet's)."""
    net = _timm_net("vit_tiny", seed=3)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "ares.pth")
    model = create_classifier("vit_tiny", 1000, weights=str(tmp_path / "ares.pth")).eval()
    reference = _robustbench_model(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), reference(_x()), rtol=1e-5, atol=1e-5)


def test_singh_training_layout(tmp_path):
    """revisiting-at's ``full_model_*.pth``: DDP over the attack wrapper over normalize_model."""
    rb = _robustbench_model(_timm_net("convnext_atto", seed=4), (0.4, 0.4, 0.4), (0.3, 0.3, 0.3))
    sd = {f"module.base_model.{k}": v for k, v in rb.state_dict().items()}
    torch.save({"model_state_dict": sd, "optimizer_state_dict": {}, "epoch": 299}, tmp_path / "full_model_299.pth")
    loaded = load_checkpoint(tmp_path / "full_model_299.pth")
    assert loaded.arch == "convnext_atto" and loaded.meta["format"] == "singh2023"
    assert loaded.meta["mean"] == pytest.approx([0.4] * 3)
    model = create_classifier("convnext_atto", 1000, weights=str(tmp_path / "full_model_299.pth")).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), rb(_x()), rtol=1e-5, atol=1e-5)


def test_old_timm_swin_layout_is_renamed(tmp_path):
    """timm < 0.9 Swin files (Liu et al.'s in RobustBench): patch merging at the end of each stage,
    ``head.*``, and the index buffers saved."""
    net = _timm_net("swin_tiny", seed=5)
    old = {}
    for k, v in net.state_dict().items():
        k = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m.group(1)) - 1}.downsample.", k)
        old[k.replace("head.fc.", "head.")] = v
    for name, buf in net.named_buffers():
        if name.endswith("relative_position_index"):
            old[name] = buf
    assert "layers.0.downsample.reduction.weight" in old and "head.weight" in old
    torch.save(old, tmp_path / "swin_old.pth")
    model = create_classifier("swin_tiny", 1000, weights=str(tmp_path / "swin_old.pth")).eval()
    reference = _robustbench_model(net, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), reference(_x()), rtol=1e-5, atol=1e-5)


def test_catalog_release_from_a_file_mirror_gets_its_normalisation(tmp_path, monkeypatch):
    """Singh2023Revisiting_ConvNeXt-T-ConvStem through the real download path (file:// mirror,
    sha256 checked): RobustBench builds it without a normaliser, so it must see raw [0, 1] pixels."""
    name = "Singh2023Revisiting_ConvNeXt-T-ConvStem"
    entry = CATALOG[name]
    assert entry.sha256 is None and entry.published_clean == pytest.approx(72.72)
    assert entry.published_autoattack == pytest.approx(49.46) and entry.eps == pytest.approx(4 / 255)
    net = _timm_net("convnext_tiny_convstem", seed=6)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, mirror / entry.file_name)
    sha = hashlib.sha256((mirror / entry.file_name).read_bytes()).hexdigest()
    monkeypatch.setitem(CATALOG, name, dataclasses.replace(entry, sha256=sha))
    monkeypatch.setenv("RDET_WEIGHTS_URL", mirror.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model = create_classifier("convnext_tiny_convstem", 1000, weights=name).eval()
    assert (tmp_path / "torch" / "hub" / "checkpoints" / "rdet" / entry.file_name).is_file()
    with torch.no_grad():
        torch.testing.assert_close(model(_x()), net(_x()), rtol=1e-5, atol=1e-5)


def test_download_that_is_not_a_torch_file_is_removed(tmp_path, monkeypatch):
    name = "Liu2023Comprehensive_Swin-B"
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / CATALOG[name].file_name).write_text("<html>sign in</html>")
    monkeypatch.setenv("RDET_WEIGHTS_URL", mirror.as_uri())
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    from rdet.backbones import download

    with pytest.raises(CheckpointError, match="did not return a PyTorch file"):
        download(name, progress=False)
    assert not list((tmp_path / "torch").rglob("*.pt"))


@pytest.mark.parametrize("weights_arch,given", [("vit_tiny", "convnext_tiny"), ("convnext_atto", "vit_tiny")])
def test_arch_mismatch_is_one_line_exit_2_nothing_written(tmp_path, capsys, weights_arch, given):
    from rdet.cli.classify import main

    torch.save(_robustbench_model(_timm_net(weights_arch)).state_dict(), tmp_path / "w.pt")
    out = tmp_path / "out"
    assert main(["--dataset", "digits", "--arch", given, "--weights", str(tmp_path / "w.pt"), "--output-dir", str(out),
                 "DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32", "DATA.NUM_WORKERS", "0"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and f"is a {weights_arch} checkpoint, not {given}" in lines[0], lines
    assert not out.exists()


def test_batchnorm_policy_on_a_layernorm_model_is_refused(tmp_path, capsys):
    from rdet.cli.classify import main

    out = tmp_path / "out"
    assert main(["--dataset", "digits", "--arch", "vit_tiny", "--output-dir", str(out), "MODEL.BN", "fixed_stats"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "vit_tiny has no BatchNorm layers" in lines[0], lines
    assert not out.exists()
    from rdet.backbones.registry import check_bn_policy

    with pytest.raises(ArchError):
        check_bn_policy("swin_tiny", "sync")
    check_bn_policy("resnet18", "fixed_stats")  # BatchNorm archs keep every policy


# --- recipes -----------------------------------------------------------------------------------------------
def _recipe_cfg(name, *opts):
    return merge_config(get_transfer_cfg(), str(CONFIG_DIR / f"recipe_{name}.yaml"), list(opts))


def test_paper_sgd_default_is_unchanged():
    cfg = get_transfer_cfg()
    model = create_classifier("resnet18", 10)
    opt = build_optimizer(model.parameters(), cfg, model=model)
    assert type(opt) is torch.optim.SGD and len(opt.param_groups) == 1
    g = opt.param_groups[0]
    assert (g["lr"], g["momentum"], g["weight_decay"]) == (0.01, 0.9, 5e-4)
    assert type(build_scheduler(opt, cfg)) is torch.optim.lr_scheduler.StepLR


def test_vit_recipe_layer_decay_and_no_decay_tensors():
    cfg = _recipe_cfg("adamw_cosine_lld")
    model = create_classifier("vit_tiny", 10)
    opt = build_optimizer(model.parameters(), cfg, model=model)
    assert type(opt) is torch.optim.AdamW
    by_param = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert len(by_param) == len(named)  # every parameter once
    lr = cfg.SOLVER.BASE_LR
    assert by_param[id(model.head.weight)]["lr"] == pytest.approx(lr)  # the new head: full lr
    # timm's grouping: embeddings = layer 0, block i = layer i + 1, the top block with the final norm
    assert by_param[id(named["body.blocks.11.mlp.fc1.weight"])]["lr"] == pytest.approx(lr)
    assert by_param[id(named["body.blocks.10.mlp.fc1.weight"])]["lr"] == pytest.approx(lr * 0.75)
    assert by_param[id(named["body.blocks.0.mlp.fc1.weight"])]["lr"] == pytest.approx(lr * 0.75 ** 11)
    assert by_param[id(named["body.patch_embed.proj.weight"])]["lr"] == pytest.approx(lr * 0.75 ** 12)
    for name in ("body.pos_embed", "body.cls_token", "body.blocks.3.norm1.weight", "head.bias"):
        assert by_param[id(named[name])]["weight_decay"] == 0.0, name
    assert by_param[id(named["body.blocks.3.attn.qkv.weight"])]["weight_decay"] == 0.05
    # fixed-feature transfer trains the head alone: one lr, no layer structure
    head_opt = build_optimizer(model.head.parameters(), cfg, model=model)
    assert {g["lr"] for g in head_opt.param_groups} == {lr}


def test_cosine_with_warmup_schedule():
    cfg = _recipe_cfg("adamw_cosine", "SOLVER.EPOCHS", "10", "SOLVER.WARMUP_EPOCHS", "2")
    f = [lr_factor(e, cfg) for e in range(10)]
    assert f[0] == pytest.approx(0.001) and f[1] == pytest.approx(0.5005) and f[2] == pytest.approx(1.0)
    assert all(a > b for a, b in zip(f[2:], f[3:])) and f[9] == pytest.approx(0.01)
    model = create_classifier("convnext_atto", 10)
    opt = build_optimizer(model.parameters(), cfg, model=model)
    sched = build_scheduler(opt, cfg)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([cfg.SOLVER.BASE_LR * v for v in f])


def test_layer_decay_needs_a_timm_model():
    from rdet.core.errors import ConfigError

    model = create_classifier("resnet18", 10)
    with pytest.raises(ConfigError, match="not a timm model"):
        build_optimizer(model.parameters(), _recipe_cfg("adamw_cosine_lld"), model=model)


# --- the tasks on the offline data (slow) -------------------------------------------------------------------
_DATA = ["DATA.DATASET", "digits", "DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32", "DATA.CROP_SCALE_MIN", "0.7",
         "DATA.MAX_TRAIN", "32", "DATA.MAX_TEST", "16", "SOLVER.BATCH_SIZE", "16"]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """One PGD epoch (linf 2/255, 2 steps) per family with the pretraining recipe: {arch: output folder}."""
    from rdet.config import get_pretrain_cfg
    from rdet.tasks import pretrain

    outs = {}
    for arch in SMALLEST:
        out = tmp_path_factory.mktemp(arch)
        cfg = merge_config(get_pretrain_cfg(), str(CONFIG_DIR / "recipe_pretrain_adamw_cosine.yaml"), [
            *_DATA, "MODEL.ARCH", arch, "SOLVER.EPOCHS", "1", "SOLVER.WARMUP_EPOCHS", "0", "DATA.NUM_WORKERS", "2",
            "ADV.NORM", "linf", "ADV.EPS", str(2 / 255), "ADV.STEPS", "2", "ADV.EVAL_STEPS", "2",
            "OUTPUT_DIR", str(out)])
        rec = pretrain.run(cfg)
        outs[arch] = (out, rec)
    return outs


@pytest.mark.slow
@pytest.mark.parametrize("arch", SMALLEST)
def test_pretrain_one_pgd_epoch(pretrained, arch):
    out, rec = pretrained[arch]
    assert rec["training"]["method"] == "pgd" and rec["robust_top1"] is not None and rec["epochs_run"] == 1
    assert rec["recipe"]["name"] == "pretrain_adamw_cosine" and rec["recipe"]["optimizer"] == "adamw"
    assert json.loads((out / "result.json").read_text())["recipe"] == rec["recipe"]
    loaded = load_checkpoint(out / "model_final.pth")  # weights_only; arch sniffed
    assert loaded.arch == arch and loaded.meta["eps"] == pytest.approx(2 / 255)


def _transfer(arch, src, out, mode, recipe, *extra):
    from rdet.tasks import transfer

    cfg = merge_config(get_transfer_cfg(), str(CONFIG_DIR / f"recipe_{recipe}.yaml"), [
        *_DATA, "MODEL.ARCH", arch, "MODEL.WEIGHTS", str(src), "TRANSFER.MODE", mode, "SOLVER.EPOCHS", "1",
        "SOLVER.WARMUP_EPOCHS", "0", "TRANSFER.EVAL_EVERY", "1", "DATA.NUM_WORKERS", "0", "OUTPUT_DIR", str(out),
        *extra])
    return transfer.run(cfg)


@pytest.mark.slow
@pytest.mark.parametrize("arch", SMALLEST)
def test_classify_fixed_freezes_every_body_tensor_and_full_trains_them(pretrained, arch, tmp_path):
    src = pretrained[arch][0] / "model_final.pth"
    recipe = get_spec(arch).recipe
    body = lambda p: {k: v for k, v in load_checkpoint(p).state_dict.items()  # noqa: E731
                      if not k.startswith(get_spec(arch).classifier + ".")}
    before = body(src)
    fixed = _transfer(arch, src, tmp_path / "fixed", "fixed", recipe)
    after = body(tmp_path / "fixed" / "last_checkpoint.pth")
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)  # LayerNorm too
    assert fixed["recipe"]["name"] == recipe and fixed["mode"] == "fixed"
    full = _transfer(arch, src, tmp_path / "full", "full", recipe)
    trained = body(tmp_path / "full" / "last_checkpoint.pth")
    changed = [k for k in before if not torch.equal(trained[k], before[k])]
    assert len(changed) > 0.9 * len(before)
    assert any(".norm" in k for k in changed)  # LayerNorm affine weights train in full-network mode
    assert full["recipe"]["layer_decay"] == (0.75 if arch == "vit_tiny" else 1.0)


@pytest.mark.slow
@pytest.mark.parametrize("arch", SMALLEST)
def test_evaluate_pgd(pretrained, arch, tmp_path):
    from rdet.tasks import robustness

    cfg = get_evaluate_cfg()
    cfg.merge_from_list(["MODEL.WEIGHTS", str(pretrained[arch][0] / "model_final.pth"), "DATA.DATASET", "digits",
                         "DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32", "DATA.MAX_TEST", "16",
                         "DATA.NUM_WORKERS", "0", "ATTACK.NORM", "linf", "ATTACK.EPS", "[0.0, 0.1]", "ATTACK.STEPS",
                         "3", "OUTPUT_DIR", str(tmp_path / "ev")])
    rec = robustness.run(cfg)
    text = json.dumps(rec)
    assert arch in text and (tmp_path / "ev" / "result.json").is_file()


@pytest.mark.slow
def test_select_ranks_the_three_families(pretrained, tmp_path, capsys):
    from rdet.cli.select import main as select_main

    models = []
    for a in SMALLEST:  # rdet.select names models by file stem
        models.append(tmp_path / f"{a}.pth")
        shutil.copy(pretrained[a][0] / "model_final.pth", models[-1])
    out = tmp_path / "sel"
    assert select_main(["--dataset", "digits", "--models", *map(str, models), "--output-dir", str(out),
                        "DATA.TRAIN_SIZE", "32", "DATA.TEST_RESIZE", "32", "DATA.NUM_WORKERS", "0", "DATA.MAX_TRAIN",
                        "40", "DATA.MAX_TEST", "16", "SOLVER.EPOCHS", "1", "TRANSFER.LR_GRID", "[0.001]",
                        "SELECT.VIEWS", "1", "SELECT.LOGREG_L2", "[0.001]", "SELECT.LOGREG_MAX_ITER", "10"]) == 0
    rows = [r.split(",") for r in (out / "ranking.csv").read_text().splitlines()[1:]]
    assert sorted((r[1], r[2]) for r in rows) == [(a, a) for a in sorted(SMALLEST)]  # model (file stem), arch


def test_bicubic_test_transform_on_request():
    """DATA.TEST_INTERPOLATION bicubic: the preprocessing the timm families' releases are measured with."""
    import numpy as np
    from PIL import Image

    from rdet.data.transforms import transforms_from_cfg

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    cfg = get_transfer_cfg()
    cfg.merge_from_list(["DATA.TRAIN_SIZE", "28", "DATA.TEST_RESIZE", "32"])
    bilinear = transforms_from_cfg(cfg)[1](img)
    cfg.DATA.TEST_INTERPOLATION = "bicubic"
    bicubic = transforms_from_cfg(cfg)[1](img)
    assert bicubic.shape == bilinear.shape == (3, 28, 28) and not torch.allclose(bicubic, bilinear)
    assert "bicubic" in repr(transforms_from_cfg(cfg)[1])


def test_paper_sgd_on_a_vit_is_said_in_one_line():
    from rdet.engine.optim import recipe_note

    note = recipe_note(get_transfer_cfg(), get_spec("vit_tiny"))
    assert note and "\n" not in note and "configs/recipe_adamw_cosine_lld.yaml" in note
    assert recipe_note(_recipe_cfg("adamw_cosine_lld"), get_spec("vit_tiny")) is None
    assert recipe_note(get_transfer_cfg(), get_spec("resnet50")) is None
