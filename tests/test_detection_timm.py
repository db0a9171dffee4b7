"""timm backbones in Detectron2 (rdet.detection.timm_backbones, .swin, .vit, rdet.convert.timm):
for the smallest ConvNeXt, Swin and ViT (and a ConvStem ViT) with random weights,
tools/convert_backbone.py writes a file whose detection-backbone features equal an independent
reference: for Swin and ViT detectron2's own ``SwinTransformer`` / ``ViT`` built here with the same
weights (renamed by this file's own mapping) at a size that is no multiple of the window, where
timm's own Swin differs; for ConvNeXt timm's public modules. The converter's check sees a network
that differs from the reference, a checkpoint of another family is one line, and
tools/train_det.py trains Mask R-CNN a few iterations and evaluates; ViTDet's heads, square
padding and large-scale jitter in the ViT recipes; AdamW with layer-wise decay and the pre-start
refusals of configs that disagree with their weights."""
import functools
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VAL8 = "rdet_test_timm_val8"  # the composed set's first 8 validation images: evaluation in seconds
# family -> (rdet arch, demo config)
FAMILIES = {
    "convnext": ("convnext_atto", "demo_mask_convnext_atto_fpn.yaml"),
    "swin": ("swin_tiny", "demo_mask_swin_t_fpn.yaml"),
    "vit": ("vit_tiny", "demo_mask_vit_t_sfp.yaml"),
    "vit_convstem": ("vit_small_convstem", "demo_mask_vit_t_sfp.yaml"),  # the config's arch is overridden
}
TRAINED = ("convnext", "swin", "vit")
DETECTION_SIZE = (2, 3, 480, 736)  # no side a multiple of Swin's 7 x 4..32 px or ViTDet's 14 x 16 px windows
VITDET_B = ["MODEL.TIMM.WINDOW_SIZE", "14", "MODEL.TIMM.GLOBAL_BLOCKS", "[2, 5, 8, 11]"]
FAST = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "64", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.WARMUP_ITERS", "1", "SOLVER.STEPS", "()",
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "64",
        "MODEL.RPN.POST_NMS_TOPK_TEST", "50", "TEST.DETECTIONS_PER_IMAGE", "10",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "SEED", "0", "SOLVER.CHECKPOINT_PERIOD", "100"]


def _random_timm_checkpoint(path: Path, arch: str) -> dict:
    """A plain timm state dict of ``arch`` with random weights (norm scales near 1, everything
    else small noise, so every tensor moves the features), saved to ``path``."""
    from rdet.backbones import get_spec

    torch.manual_seed(0)
    sd = get_spec(arch).builder(1000).state_dict()
    out = {}
    for k, v in sd.items():
        if not v.is_floating_point():
            out[k] = v
        elif "norm" in k and k.endswith("weight"):
            out[k] = 1.0 + 0.1 * torch.randn_like(v)
        else:
            out[k] = 0.05 * torch.randn_like(v)
    torch.save(out, path)
    return out


def _convert_cli(args, capsys):
    from rdet.cli.convert import main

    rc = main([str(a) for a in args])
    return rc, capsys.readouterr()


def _detection_model(config: str, weights: Path, opts=()):
    """The detector rdet's train_det builds from ``config`` with ``weights`` loaded, eval mode."""
    from detectron2.checkpoint import DetectionCheckpointer

    from rdet.detection.train import build_cfg
    from rdet.detection.trainer import Trainer

    cfg = build_cfg(str(CONFIGS / config), ["MODEL.WEIGHTS", str(weights), "MODEL.DEVICE", "cpu", *opts])
    model = Trainer.build_model(cfg)
    DetectionCheckpointer(model).load(str(weights))
    return cfg, model.eval()


def _rel(a, b) -> float:
    return float((a - b).abs().max() / b.abs().max())


# -- detectron2's own networks with timm's weights, renamed here independently of rdet's mapping --------

def _reference_swin_tiny(sd: dict):
    """detectron2's ``SwinTransformer`` as the Swin authors' detectors build Swin-T (embed 96,
    depths 2-2-6-2, heads 3-6-12-24, window 7, output norms on all four stages), with timm >= 0.9
    tensors: the patch merging timm keeps at the start of stage i+1 ends stage i here."""
    from detectron2.modeling.backbone.swin import SwinTransformer

    net = SwinTransformer(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7,
                          drop_path_rate=0.0, out_indices=(0, 1, 2, 3))
    renamed = {}
    for k, v in sd.items():
        parts = k.split(".")
        if parts[0] in ("head", "norm"):
            continue
        if parts[0] == "layers" and parts[2] == "downsample":
            parts[1] = str(int(parts[1]) - 1)
        renamed[".".join(parts)] = v
    missing, unexpected = net.load_state_dict(renamed, strict=False)
    assert not unexpected
    assert sorted(missing) == sorted([f"norm{i}.{p}" for i in range(4) for p in ("weight", "bias")] +
                                     [k for k in net.state_dict() if k.endswith("relative_position_index")])
    return {f"res{i + 2}": f"p{i}" for i in range(4)}, net.eval()


def _reference_vit(sd: dict, arch: str):
    """detectron2's ``ViT`` as ViTDet builds ViT-B (window 14, global attention in blocks 2, 5, 8,
    11, LayerNorm eps 1e-6, absolute position embedding pretrained with a class token), without
    relative positions, at ViT-T's or ViT-S's width; the ConvStem ViT with Singh et al.'s stem as
    its patch projection. timm's names are detectron2's, less the class token, final norm, head."""
    from detectron2.modeling.backbone.vit import ViT

    from rdet.backbones.timm_models import ConvStem

    dim, heads = (192, 3) if arch == "vit_tiny" else (384, 6)
    net = ViT(img_size=1024, patch_size=16, embed_dim=dim, depth=12, num_heads=heads, mlp_ratio=4, qkv_bias=True,
              drop_path_rate=0.0, norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), window_size=14,
              window_block_indexes=[0, 1, 3, 4, 6, 7, 9, 10], use_rel_pos=False, pretrain_img_size=224,
              pretrain_use_cls_token=True)
    if "convstem" in arch:
        net.patch_embed.proj = ConvStem(((48, 2), (96, 2), (192, 2), (384, 2)), out_channels=dim)
    net.load_state_dict({k: v for k, v in sd.items() if k != "cls_token" and not k.startswith(("norm.", "head."))})
    return {"last_feat": "last_feat"}, net.eval()


@torch.no_grad()
def _independent_error(family: str, arch: str, sd: dict, weights: Path) -> float:
    """max relative error between the bottom-up features of the detector train_det builds (ViTs
    with ViTDet-B's windows) and the reference's: detectron2's own Swin / ViT at
    :data:`DETECTION_SIZE`, or, for ConvNeXt, timm's public modules (stem and stages) at 64 x 96."""
    from rdet.backbones import get_spec

    config = FAMILIES[family][1]
    opts = (VITDET_B + ["MODEL.TIMM.ARCH", arch]) if family.startswith("vit") else []
    _, model = _detection_model(config, weights, opts)
    bottom_up = model.backbone.net if family.startswith("vit") else model.backbone.bottom_up
    if family == "convnext":
        net = get_spec(arch).builder(1000)
        net.load_state_dict(sd)
        net.eval()
        x = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
        feats, h, errs = bottom_up(x), net.stem(x), []
        for i, stage in enumerate(net.stages):
            h = stage(h)  # under ConvNeXt's detector's output norm (channels, eps 1e-6), as a fresh file has it
            ref = F.layer_norm(h.permute(0, 2, 3, 1), h.shape[1:2], eps=1e-6).permute(0, 3, 1, 2)
            errs.append(_rel(feats[f"res{i + 2}"], ref))
        return max(errs)
    names, ref = _reference_swin_tiny(sd) if family == "swin" else _reference_vit(sd, arch)
    x = torch.randn(*DETECTION_SIZE, generator=torch.Generator().manual_seed(1))
    got, want = bottom_up(x), ref(x)
    return max(_rel(got[k], want[names[k]]) for k in names)


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """family -> (arch, state dict, converter output .pkl, converter's own error, its stdout)."""
    return {}


def _converted(converted, family, tmp_path_factory, capsys):
    if family not in converted:
        arch, _ = FAMILIES[family]
        tmp = tmp_path_factory.mktemp(f"timm_{family}")
        sd = _random_timm_checkpoint(tmp / f"{arch}.pth", arch)
        rc, out = _convert_cli([tmp / f"{arch}.pth", tmp / f"{arch}.pkl", "--arch", arch], capsys)
        assert rc == 0, out.err
        err = float(out.out.split("max relative error ")[1].split()[0])
        converted[family] = (arch, sd, tmp / f"{arch}.pkl", err, out.out)
    return converted[family]


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_converted_features_equal_the_reference(family, converted, tmp_path_factory, capsys):
    arch, sd, pkl, err, out = _converted(converted, family, tmp_path_factory, capsys)
    assert err <= 1e-4  # the converter's own check, as it printed it
    config = yaml_of(pkl)
    assert config["MODEL"]["TIMM"]["ARCH"] == arch and config["INPUT"]["FORMAT"] == "RGB"
    indep = _independent_error(family, arch, sd, pkl)
    print(f"{family}: converter check {err:.2e}, independent check {indep:.2e}")
    assert indep <= 1e-4


@pytest.mark.slow
@torch.no_grad()
def test_swin_is_the_authors_not_timms_at_detection_sizes(converted, tmp_path_factory, capsys):
    """The detector's Swin shifts every odd block, the 7 x 7 last stage of a 224-px model
    included, and normalises each output stage (fresh norms, as the authors' detectors start).
    timm's own Swin on the same weights (output norms applied) equals it only where timm shifts
    everywhere and pads nothing: built for 448 px, at 448 x 448. Built for 224 px (what rdet ran
    before) timm leaves the last stage unshifted, and at 480 x 736 shifts before it pads."""
    import timm

    from rdet.backbones import get_spec

    arch, sd, pkl, _, _ = _converted(converted, "swin", tmp_path_factory, capsys)
    _, model = _detection_model(FAMILIES["swin"][1], pkl)
    swin = model.backbone.bottom_up
    assert [[b.shift_size for b in layer.blocks] for layer in swin.layers] == [[0, 3], [0, 3], [0, 3] * 3, [0, 3]]
    for i in range(4):
        norm = getattr(swin, f"norm{i}")
        assert torch.equal(norm.weight, torch.ones_like(norm.weight)) and torch.equal(norm.bias, torch.zeros_like(norm.bias))
    built_224 = get_spec(arch).builder(1000)
    built_448 = timm.create_model(get_spec(arch).timm_name, pretrained=False, img_size=448)
    gaps = {}
    for name, net, size in [("timm 448 at 448", built_448, (448, 448)), ("timm 224 at 448", built_224, (448, 448)),
                            ("timm 224 at 480x736", built_224, (480, 736))]:
        net.load_state_dict(sd)
        net.eval()
        x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(2))
        ours = swin(x)
        theirs = net.forward_intermediates(x, intermediates_only=True)  # NCHW stages
        gaps[name] = [_rel(ours[f"res{i + 2}"], F.layer_norm(t.permute(0, 2, 3, 1), t.shape[1:2]).permute(0, 3, 1, 2))
                      for i, t in enumerate(theirs)]
    print("swin vs timm, res2..res5:", gaps)
    assert max(gaps["timm 448 at 448"]) < 1e-4
    assert max(gaps["timm 224 at 448"][:3]) < 1e-4 and gaps["timm 224 at 448"][3] > 1e-2  # last stage unshifted
    assert min(gaps["timm 224 at 480x736"][1:]) > 1e-2


@pytest.mark.slow
@pytest.mark.parametrize("family", ["swin", "vit"])
def test_the_check_sees_a_network_other_than_the_reference(family, tmp_path, monkeypatch, capsys):
    """The converter's check runs the detection network's own windowing: Swin's last stage
    without its shift (timm's choice for a 224-px model), or a ViT with 7-token windows instead of
    one 14-token window at 224 px, fails it, and nothing is written."""
    import rdet.detection.timm_backbones as tb

    arch = FAMILIES[family][0]
    _random_timm_checkpoint(tmp_path / "w.pth", arch)
    if family == "swin":
        real = tb.build_swin_stages

        def unshifted_last_stage(*args, **kwargs):
            net = real(*args, **kwargs)
            net.layers[3].blocks[1].shift_size = 0
            return net

        monkeypatch.setattr(tb, "build_swin_stages", unshifted_last_stage)
    else:
        real = tb.build_vit
        monkeypatch.setattr(tb, "build_vit", lambda net, window_size, *a, **k: real(net, window_size and 7, *a, **k))
    rc, out = _convert_cli([tmp_path / "w.pth", tmp_path / "w.pkl", "--arch", arch], capsys)
    assert rc == 2 and "conversion check failed" in out.err and len(out.err.strip().splitlines()) == 1, out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.pth"]


def test_converted_names_are_detectron2s(tmp_path):
    """The file names detectron2's own modules: Swin's patch merging at the end of the stage it
    ends, its output norms and position index; ViT's position embedding with its class entry, no
    class token; ConvNeXt under ``model.`` with timm's names, beside its detector's output norms."""
    from rdet.convert.timm import backbone_state_dict

    for arch, family, probes in [
        ("swin_tiny", "hierarchical", {"layers.0.downsample.reduction.weight": (192, 384), "norm3.weight": (768,),
                                       "layers.3.blocks.1.attn.relative_position_index": (49, 49)}),
        ("vit_tiny", "vit", {"pos_embed": (1, 197, 192), "blocks.11.mlp.fc2.weight": (192, 768)}),
        ("convnext_atto", "hierarchical", {"model.stages.3.blocks.1.conv_dw.weight": (320, 1, 7, 7),
                                           "norm0.weight": (40,), "norm3.bias": (320,)})]:
        sd = _random_timm_checkpoint(tmp_path / f"{arch}.pth", arch)
        d2 = backbone_state_dict(sd, arch, family, "test")
        prefix = "backbone.net." if family == "vit" else "backbone.bottom_up."
        assert all(k.startswith(prefix) for k in d2)
        for k, shape in probes.items():
            assert tuple(d2[prefix + k].shape) == shape, k
        assert not any(k.endswith(("cls_token", "head.fc.weight", "head.weight", "layers.3.downsample.norm.weight"))
                       for k in d2)
    assert torch.equal(d2["backbone.bottom_up.model.stem.0.weight"], sd["stem.0.weight"])


def yaml_of(pkl: Path) -> dict:
    import yaml

    return yaml.safe_load(pkl.with_suffix(".yaml").read_text())


@pytest.mark.slow
def test_a_mismatch_found_by_the_check_removes_the_outputs(tmp_path, monkeypatch, capsys):
    import rdet.convert.timm as conv

    arch = "convnext_atto"
    _random_timm_checkpoint(tmp_path / "c.pth", arch)
    real = conv.reference_features

    def off_by_a_little(sd, arch, x):  # as if one stage were converted wrongly: 1e-3 relative
        feats = real(sd, arch, x)
        feats["res4"] = feats["res4"] * 1.001
        return feats

    monkeypatch.setattr(conv, "reference_features", off_by_a_little)
    rc, out = _convert_cli([tmp_path / "c.pth", tmp_path / "c.pkl", "--arch", arch], capsys)
    assert rc == 2
    assert "conversion check failed" in out.err and len(out.err.strip().splitlines()) == 1
    assert not (tmp_path / "c.pkl").exists() and not (tmp_path / "c.yaml").exists()


def test_a_checkpoint_of_another_family_is_one_line(tmp_path, capsys):
    _random_timm_checkpoint(tmp_path / "v.pth", "vit_tiny")
    rc, out = _convert_cli([tmp_path / "v.pth", tmp_path / "v.pkl", "--arch", "convnext_atto"], capsys)
    assert rc == 2 and len(out.err.strip().splitlines()) == 1 and "convnext_atto" in out.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.pth"]


@pytest.fixture(scope="module")
def val8(tmp_path_factory, fashion_mnist_root):
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.data.datasets import register_coco_instances

    from rdet.detection.datasets import DEMO_VAL, register_demo_dataset

    register_demo_dataset()
    if VAL8 not in DatasetCatalog.list():
        meta = MetadataCatalog.get(DEMO_VAL)
        coco = json.loads(Path(meta.json_file).read_text())
        coco["images"] = coco["images"][:8]
        ids = {im["id"] for im in coco["images"]}
        coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in ids]
        path = tmp_path_factory.mktemp("val8") / "instances_val8.json"
        path.write_text(json.dumps(coco))
        register_coco_instances(VAL8, {}, str(path), meta.image_root)
    return ["DATASETS.TEST", f"('{VAL8}',)"]


@pytest.mark.slow
@pytest.mark.parametrize("family", TRAINED)
def test_train_det_trains_mask_rcnn_and_evaluates(family, converted, val8, tmp_path, tmp_path_factory, capsys):
    from rdet.cli.train_det import main

    arch, _, pkl, _, _ = _converted(converted, family, tmp_path_factory, capsys)
    extra = ["MODEL.TIMM.WINDOW_SIZE", "2"] if family == "vit" else []  # 64 px = 4 x 4 tokens: 2 x 2 windows
    workers = "2" if family == "convnext" else "0"
    rc = main(["--config-file", str(CONFIGS / FAMILIES[family][1]), *FAST, *val8, *extra, "SOLVER.MAX_ITER", "3",
               "DATALOADER.NUM_WORKERS", workers, "MODEL.WEIGHTS", str(pkl), "OUTPUT_DIR", str(tmp_path / "out")])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((tmp_path / "out" / "result.json").read_text())
    assert rec["iterations"] == 3 and rec["backbone"]["arch"] == arch
    assert rec["detection_task"] == "instance_segmentation"
    for k in ("box_AP", "box_AP50", "mask_AP"):
        assert isinstance(rec[k], float) and 0.0 <= rec[k] <= 100.0, (k, rec[k])
    losses = [json.loads(x) for x in (tmp_path / "out" / "metrics.json").read_text().splitlines() if x.strip()]
    assert all(math.isfinite(x["total_loss"]) for x in losses if "total_loss" in x)
    assert (tmp_path / "out" / "model_final.pth").is_file()


def test_adamw_with_layer_decay_for_vit():
    """SOLVER.OPTIMIZER AdamW with LAYER_DECAY: block i of 12 at lr * 0.7 ** (12 - i), the patch
    and position embeddings at lr * 0.7 ** 13, the pyramid and heads at lr; no weight decay on the
    position embedding and norms."""
    from detectron2.modeling import build_model

    from rdet.detection.train import build_cfg
    from rdet.detection.trainer import Trainer

    cfg = build_cfg(str(CONFIGS / "demo_mask_vit_t_sfp.yaml"), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    opt = Trainer.build_optimizer(cfg, model)
    assert isinstance(opt, torch.optim.AdamW)
    group = {id(p): g for g in opt.param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    lr, d = cfg.SOLVER.BASE_LR, cfg.SOLVER.LAYER_DECAY
    assert math.isclose(group[id(named["backbone.net.blocks.0.attn.qkv.weight"])]["lr"], lr * d ** 12)
    assert math.isclose(group[id(named["backbone.net.blocks.11.mlp.fc1.weight"])]["lr"], lr * d ** 1)
    assert math.isclose(group[id(named["backbone.net.patch_embed.proj.weight"])]["lr"], lr * d ** 13)
    assert math.isclose(group[id(named["backbone.simfp_2.0.weight"])]["lr"], lr)
    assert math.isclose(group[id(named["roi_heads.box_predictor.cls_score.weight"])]["lr"], lr)
    assert group[id(named["backbone.net.pos_embed"])]["weight_decay"] == 0.0
    assert group[id(named["backbone.net.blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert group[id(named["backbone.net.blocks.0.attn.qkv.weight"])]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY


def test_convnext_layer_decay_is_its_recipes():
    """ConvNeXt's detection recipe (layer_wise, 0.95): over n = 3 + (stage-2 blocks) // 3 groups
    (ConvNeXt-T 6; atto's 6 stage-2 blocks: 5), the stem at 0.95 ** (n + 1), stage 0 ** n, stage
    1 ** (n - 1), stage 2's block b ** (n - 2 - b // 3), stage 3 ** 1, output norms, FPN and heads
    at the full lr; a Swin FPN config with layer decay is refused."""
    from detectron2.modeling import build_model

    from rdet.core.errors import ConfigError
    from rdet.detection.train import build_cfg
    from rdet.detection.trainer import Trainer, check_optimizer_config

    cfg = build_cfg(str(CONFIGS / "demo_mask_convnext_atto_fpn.yaml"), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    check_optimizer_config(cfg)
    model = build_model(cfg)
    group = {id(p): g for g in Trainer.build_optimizer(cfg, model).param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    lr, d, n = cfg.SOLVER.BASE_LR, cfg.SOLVER.LAYER_DECAY, 5
    assert d == 0.95
    m = "backbone.bottom_up.model."
    for name, power in [(m + "stem.0.weight", n + 1), (m + "stages.0.blocks.1.conv_dw.weight", n),
                        (m + "stages.1.downsample.1.weight", n - 1), (m + "stages.2.downsample.1.weight", n - 2),
                        (m + "stages.2.blocks.5.mlp.fc1.weight", n - 3), (m + "stages.3.blocks.0.gamma", 1),
                        ("backbone.bottom_up.norm0.weight", 0), ("backbone.fpn_lateral2.weight", 0),
                        ("roi_heads.box_predictor.cls_score.weight", 0)]:
        assert math.isclose(group[id(named[name])]["lr"], lr * d ** power), name
    with pytest.raises(ConfigError, match="ViT and ConvNeXt"):
        check_optimizer_config(build_cfg(str(CONFIGS / "demo_mask_swin_t_fpn.yaml"), ["SOLVER.LAYER_DECAY", "0.9"]))


def _recipe_stage_wise(official: str, num_layers: int, decay: float) -> float:
    """ConvNeXt's segmentation recipe on its own parameter names (``stage_wise``, written here from
    ConvNeXt's ``semantic_segmentation`` optimizer constructor): groups num_layers + 2, the
    downsampling layers 0 (the stem is ``downsample_layers.0``), stage i i + 1, the rest the last."""
    groups = num_layers + 2
    if official.startswith("backbone.downsample_layers"):
        layer = 0
    elif official.startswith("backbone.stages"):
        layer = int(official.split(".")[2]) + 1
    else:
        layer = groups - 1
    return decay ** (groups - layer - 1)


def test_upernet_convnext_stage_wise_decay_is_its_segmentation_recipe():
    """The ConvNeXt UperNet config decays lr stage-wise (0.9) as ConvNeXt's segmentation recipe:
    every parameter's lr equals the recipe's on the official name of the same tensor (timm's stem
    and stages.i.downsample are its downsample_layers); stage-wise on a ViT is refused."""
    from detectron2.modeling import build_model

    from rdet.core.errors import ConfigError
    from rdet.detection.train import build_cfg
    from rdet.detection.trainer import Trainer, check_optimizer_config

    cfg = build_cfg(str(CONFIGS / "ade20k_upernet_convnext_t_160k.yaml"),
                    ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu", "MODEL.TIMM.ARCH", "convnext_atto",
                     "MODEL.SEM_SEG_HEAD.NORM", "BN"])
    check_optimizer_config(cfg)
    assert (cfg.SOLVER.LAYER_DECAY, cfg.SOLVER.LAYER_DECAY_MODE) == (0.9, "stage")
    model = build_model(cfg)
    group = {id(p): g for g in Trainer.build_optimizer(cfg, model).param_groups for p in g["params"]}
    lr, n, m = cfg.SOLVER.BASE_LR, 5, "backbone.bottom_up.model."  # atto: 6 stage-2 blocks, n = 3 + 6 // 3
    seen = set()
    for name, p in model.named_parameters():
        official = name
        if name.startswith(m + "stem."):
            official = "backbone.downsample_layers.0." + name[len(m + "stem."):]
        elif name.startswith(m + "stages."):
            i, rest = name[len(m + "stages."):].split(".", 1)
            official = (f"backbone.downsample_layers.{i}." + rest[len("downsample."):] if rest.startswith("downsample.")
                        else f"backbone.stages.{i}.{rest}")
        want = lr * _recipe_stage_wise(official, n, 0.9)
        assert math.isclose(group[id(p)]["lr"], want), (name, group[id(p)]["lr"], want)
        seen.add(round(want / lr, 6))
    assert len(seen) == 6  # downsampling, the four stages, the rest
    with pytest.raises(ConfigError, match="stage-wise decay is ConvNeXt's"):
        check_optimizer_config(build_cfg(str(CONFIGS / "ade20k_sem_vit_b_sfp_80k.yaml"), ["SOLVER.LAYER_DECAY_MODE", "stage"]))


@pytest.mark.parametrize("config,undecayed,decayed", [
    ("demo_mask_swin_t_fpn.yaml", ["backbone.bottom_up.layers.0.blocks.0.attn.relative_position_bias_table",
                                   "backbone.bottom_up.norm0.weight", "backbone.bottom_up.layers.0.blocks.0.norm1.bias"],
     ["backbone.bottom_up.layers.0.blocks.0.attn.qkv.bias", "backbone.bottom_up.layers.0.blocks.0.attn.qkv.weight"]),
    ("demo_mask_convnext_atto_fpn.yaml", ["backbone.bottom_up.model.stages.0.blocks.0.gamma",
                                          "backbone.bottom_up.model.stages.0.blocks.0.conv_dw.bias",
                                          "backbone.bottom_up.norm0.weight"],
     ["backbone.bottom_up.model.stages.0.blocks.0.conv_dw.weight"]),
    ("demo_mask_vit_t_sfp.yaml", ["backbone.net.pos_embed", "backbone.net.blocks.0.norm1.bias"],
     ["backbone.net.blocks.0.attn.qkv.bias", "roi_heads.box_head.fc1.bias"]),
])
def test_weight_decay_follows_each_anchor(config, undecayed, decayed):
    """Swin's recipe decays everything but norms and relative position tables (biases included);
    ConvNeXt's no 1-D tensor (layer scales, biases, norms); ViTDet's no norm or position embedding."""
    from detectron2.modeling import build_model

    from rdet.detection.train import build_cfg
    from rdet.detection.trainer import Trainer

    cfg = build_cfg(str(CONFIGS / config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    group = {id(p): g for g in Trainer.build_optimizer(cfg, model).param_groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert [group[id(named[n])]["weight_decay"] for n in undecayed] == [0.0] * len(undecayed)
    assert [group[id(named[n])]["weight_decay"] for n in decayed] == [cfg.SOLVER.WEIGHT_DECAY] * len(decayed)


def test_vit_recipe_is_vitdets_detector():
    """The ``*vit*`` recipe builds ViTDet's Mask R-CNN: detectron2's ViT with 14-token windows and
    global blocks 2, 5, 8, 11 (no relative positions), square padding to 1024, a 2-conv RPN head,
    a 4-conv + 1-fc box head and a mask head with LayerNorm, and large-scale jitter in training."""
    import detectron2.data.transforms as T
    from detectron2.layers.batch_norm import LayerNorm
    from detectron2.modeling import build_model

    from rdet.detection.augment import build_train_mapper
    from rdet.detection.train import build_cfg

    cfg = build_cfg(str(CONFIGS / "coco_mask_vit_b_sfp_1x.yaml"),  # ViT-T's width for speed; ViT-B's layout
                    ["MODEL.TIMM.ARCH", "vit_tiny", "MODEL.DEVICE", "cpu"])
    model = build_model(cfg)
    vit = model.backbone.net
    assert [b.window_size for b in vit.blocks] == [14, 14, 0, 14, 14, 0, 14, 14, 0, 14, 14, 0]
    assert not any(b.attn.use_rel_pos for b in vit.blocks) and vit.pos_embed.shape == (1, 197, 192)
    assert model.backbone.padding_constraints["square_size"] == 1024
    assert len(model.proposal_generator.rpn_head.conv) == 2
    box = model.roi_heads.box_head
    assert len(box.conv_norm_relus) == 4 and len(box.fcs) == 1 and box.fcs[0].out_features == 1024
    assert all(isinstance(c.norm, LayerNorm) for c in box.conv_norm_relus)
    mask_convs = model.roi_heads.mask_head.conv_norm_relus
    assert len(mask_convs) == 4 and all(isinstance(c.norm, LayerNorm) for c in mask_convs)
    assert (cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MAX_SIZE_TEST) == (1024, 1024)
    augs = build_train_mapper(cfg).augmentations.augs
    assert [type(a) for a in augs] == [T.RandomFlip, T.ResizeScale, T.FixedSizeCrop]
    assert (augs[1].min_scale, augs[1].max_scale, augs[2].crop_size, augs[2].pad) == (0.1, 2.0, (1024, 1024), False)


@torch.no_grad()
def test_vitdet_relative_positions_are_an_option_that_starts_at_zero():
    """``MODEL.TIMM.REL_POS True``: ViTDet's zero-initialised tables in every block (global ones
    sized for the 1024 square, windowed ones for 14 tokens); at initialisation the features are
    those of the network without them, so converted weights load unchanged and the tables learn."""
    from detectron2.modeling import build_backbone

    from rdet.detection.train import build_cfg

    feats = {}
    for rel in ("False", "True"):
        torch.manual_seed(0)
        cfg = build_cfg(str(CONFIGS / "coco_mask_vit_b_sfp_1x.yaml"),
                        ["MODEL.TIMM.ARCH", "vit_tiny", "MODEL.TIMM.REL_POS", rel, "MODEL.DEVICE", "cpu"])
        vit = build_backbone(cfg).net.eval()
        feats[rel] = vit(torch.randn(1, 3, 240, 368, generator=torch.Generator().manual_seed(3)))["last_feat"]
    attn = vit.blocks
    assert attn[2].attn.rel_pos_h.shape == (127, 64) and attn[0].attn.rel_pos_w.shape == (27, 64)
    assert all(float(b.attn.rel_pos_h.abs().max()) == 0.0 for b in attn)
    assert torch.allclose(feats["True"], feats["False"], rtol=0, atol=1e-6)


def test_large_scale_jitter_crops_to_its_square_and_recomputes_boxes(tmp_path):
    """LSJ on a 200 x 300 image with one square object: every draw is at most the 96-px square,
    scaled between 0.1 and 2 of the square-fitted size, and boxes follow the cropped masks."""
    import numpy as np
    from PIL import Image

    from rdet.detection.augment import build_train_mapper
    from rdet.detection.train import build_cfg

    Image.fromarray(np.full((200, 300, 3), 90, np.uint8)).save(tmp_path / "im.png")
    poly = [100.0, 50.0, 180.0, 50.0, 180.0, 130.0, 100.0, 130.0]
    record = {"file_name": str(tmp_path / "im.png"), "height": 200, "width": 300, "image_id": 0,
              "annotations": [{"bbox": [100, 50, 80, 80], "bbox_mode": 1, "category_id": 0, "segmentation": [poly],
                               "iscrowd": 0}]}
    cfg = build_cfg(str(CONFIGS / "demo_mask_vit_t_sfp.yaml"), ["INPUT.LSJ.IMAGE_SIZE", "96", "MODEL.DEVICE", "cpu"])
    assert cfg.INPUT.LSJ.ENABLED  # the demo ViT recipe trains with LSJ as ViTDet
    mapper = build_train_mapper(cfg)
    np.random.seed(0)
    sides = []
    for _ in range(20):
        out = mapper(dict(record))
        _, h, w = out["image"].shape
        assert h <= 96 and w <= 96
        sides.append(max(h, w))
        inst = out["instances"]
        if len(inst):
            box = inst.gt_boxes.tensor[0]
            assert 0 <= box[0] < box[2] <= w and 0 <= box[1] < box[3] <= h
            mask = inst.gt_masks.tensor[0] if hasattr(inst.gt_masks, "tensor") else None
            if mask is not None:  # bitmask: the box is the mask's extent (recomputed after the crop)
                ys, xs = torch.nonzero(mask, as_tuple=True)
                assert abs(float(box[0]) - float(xs.min())) <= 1 and abs(float(box[2]) - float(xs.max() + 1)) <= 1
    assert min(sides) < 48 and max(sides) == 96  # shrunk to below half the square and cropped to it


def test_configs_that_disagree_with_their_weights_are_refused():
    from rdet.core.errors import ConfigError
    from rdet.detection.timm_backbones import check_timm_config
    from rdet.detection.train import build_cfg

    def cfg(name, *opts):
        return build_cfg(str(CONFIGS / name), list(opts))

    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    check_timm_config(cfg("demo_mask_convnext_atto_fpn.yaml"), {"arch": "convnext_atto", **imagenet})
    swin_layout = {"layout": "detectron2.SwinTransformer"}
    check_timm_config(cfg("coco_mask_swin_t_fpn_1x.yaml"), {"arch": "swin_tiny", **imagenet, **swin_layout})
    cases = [
        (cfg("demo_mask_convnext_atto_fpn.yaml"), {"arch": "vit_tiny"}, "MODEL.TIMM.ARCH is convnext_atto"),
        (cfg("demo_mask_r18_fpn.yaml"), {"arch": "convnext_atto"}, "build_timm_fpn_backbone"),
        (cfg("coco_mask_convnext_t_fpn_1x.yaml"), {"arch": "convnext_tiny_convstem"},  # another stem
         "MODEL.TIMM.ARCH is convnext_tiny"),
        (cfg("demo_mask_vit_t_sfp.yaml"), {"arch": "vit_tiny", "mean": [0.5] * 3, "std": [0.5] * 3,
                                           "layout": "detectron2.ViT"}, "MODEL.PIXEL_MEAN"),
        (cfg("demo_mask_convnext_atto_fpn.yaml", "MODEL.BACKBONE.FREEZE_AT", "2"), None, "FREEZE_AT 2"),
        (cfg("demo_mask_convnext_atto_fpn.yaml", "MODEL.TIMM.ARCH", "vit_tiny"), None,
         "use build_timm_vit_sfp_backbone"),
        # a file converted for rdet's earlier timm Swin: its names would load into nothing
        (cfg("coco_mask_swin_t_fpn_1x.yaml"), {"arch": "swin_tiny", **imagenet}, "convert the checkpoint again"),
        (cfg("demo_mask_vit_t_sfp.yaml"), {"arch": "vit_tiny", **imagenet, "layout": "timm"}, "detectron2.ViT"),
        # ViTDet pads to a 1024 square: a larger test image would fail mid-run
        (cfg("coco_mask_vit_b_sfp_1x.yaml", "INPUT.MAX_SIZE_TEST", "1333"), None,
         "INPUT.MAX_SIZE_TEST 1333: larger than MODEL.TIMM.SQUARE_PAD 1024"),
        (cfg("coco_mask_vit_b_sfp_1x.yaml", "INPUT.LSJ.MIN_SCALE", "0.0"), None, "INPUT.LSJ"),
        (cfg("demo_mask_vit_t_sfp.yaml", "MODEL.TIMM.GLOBAL_BLOCKS", "[2, 12]"), None, "GLOBAL_BLOCKS 12"),
    ]
    for c, meta, words in cases:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            check_timm_config(c, meta)
