"""timm backbones in Detectron2 (rdet.detection.timm_backbones, rdet.convert.timm): for the
smallest ConvNeXt, Swin and ViT with random weights, tools/convert_backbone.py writes a file whose
detection-backbone features equal timm's (its own check, and an independent one here through
timm's public forward), a check that finds a mismatch removes what it wrote, a checkpoint of
another family is one line, and tools/train_det.py trains Mask R-CNN a few iterations and
evaluates; AdamW with layer-wise decay and the pre-start refusals of configs that disagree with
their weights."""
import json
import math
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
VAL8 = "rdet_test_timm_val8"  # the composed set's first 8 validation images: evaluation in seconds
# (rdet arch, demo config, detectron2 feature names)
FAMILIES = {
    "convnext": ("convnext_atto", "demo_mask_convnext_atto_fpn.yaml"),
    "swin": ("swin_tiny", "demo_mask_swin_t_fpn.yaml"),
    "vit": ("vit_tiny", "demo_mask_vit_t_sfp.yaml"),
}
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


@torch.no_grad()
def _independent_error(family: str, arch: str, sd: dict, config: str, weights: Path) -> float:
    """max relative error between the trained detector's bottom-up features and timm's, computed
    here through timm's public modules (stem / patch embed and stages, or ViT's forward_features
    after the final norm), not through the converter's check."""
    from rdet.backbones import get_spec

    cfg, model = _detection_model(config, weights, ["MODEL.TIMM.WINDOW_SIZE", "0"])
    net = get_spec(arch).builder(1000)
    net.load_state_dict(sd)
    net.eval()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor(cfg.MODEL.PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(cfg.MODEL.PIXEL_STD).view(1, 3, 1, 1)
    d2_in = (x * 255 - mean) / std
    tm_in = (x - torch.tensor(get_spec(arch).mean).view(1, 3, 1, 1)) / torch.tensor(get_spec(arch).std).view(1, 3, 1, 1)
    rel = lambda a, b: float((a - b).abs().max() / b.abs().max())  # noqa: E731
    if family == "vit":
        feat = model.backbone.net(d2_in)["last_feat"]  # (N, C, h, w), before the final norm
        tokens = net.forward_features(tm_in)[:, net.num_prefix_tokens:]  # after it
        return rel(net.norm(feat.flatten(2).transpose(1, 2)), tokens)
    feats = model.backbone.bottom_up(d2_in)
    h = net.stem(tm_in) if family == "convnext" else net.patch_embed(tm_in)
    errs = []
    for i, stage in enumerate(net.stages if family == "convnext" else net.layers):
        h = stage(h)
        ref = h if family == "convnext" else h.permute(0, 3, 1, 2)  # Swin's stages are NHWC
        errs.append(rel(feats[f"res{i + 2}"], ref))
    return max(errs)


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
def test_converted_features_equal_timm(family, converted, tmp_path_factory, capsys):
    arch, sd, pkl, err, out = _converted(converted, family, tmp_path_factory, capsys)
    assert err <= 1e-4  # the converter's own check, as it printed it
    config = yaml_of(pkl)
    assert config["MODEL"]["TIMM"]["ARCH"] == arch and config["INPUT"]["FORMAT"] == "RGB"
    indep = _independent_error(family, arch, sd, FAMILIES[family][1], pkl)
    print(f"{family}: converter check {err:.2e}, independent check {indep:.2e}")
    assert indep <= 1e-4


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
@pytest.mark.parametrize("family", list(FAMILIES))
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
    assert math.isclose(group[id(named["backbone.net.model.blocks.0.attn.qkv.weight"])]["lr"], lr * d ** 12)
    assert math.isclose(group[id(named["backbone.net.model.blocks.11.mlp.fc1.weight"])]["lr"], lr * d ** 1)
    assert math.isclose(group[id(named["backbone.net.model.patch_embed.proj.weight"])]["lr"], lr * d ** 13)
    assert math.isclose(group[id(named["backbone.simfp_2.0.weight"])]["lr"], lr)
    assert math.isclose(group[id(named["roi_heads.box_predictor.cls_score.weight"])]["lr"], lr)
    assert group[id(named["backbone.net.model.pos_embed"])]["weight_decay"] == 0.0
    assert group[id(named["backbone.net.model.blocks.0.norm1.weight"])]["weight_decay"] == 0.0
    assert group[id(named["backbone.net.model.blocks.0.attn.qkv.weight"])]["weight_decay"] == cfg.SOLVER.WEIGHT_DECAY


def test_window_attention_runs_timm_blocks_on_windows():
    """With one window covering the whole grid and no global blocks, the ViTDet path is timm's
    global attention without the class token: equal to running timm's blocks on the grid tokens."""
    from rdet.detection.timm_backbones import TimmViT, _window_partition, _window_unpartition

    x = torch.randn(2, 5, 7, 3)
    win, padded = _window_partition(x, 3)
    assert win.shape == (2 * 2 * 3, 9, 3) and padded == (6, 9)
    assert torch.equal(_window_unpartition(win, 3, padded, (5, 7), 2), x)

    torch.manual_seed(0)
    vit = TimmViT("vit_tiny_patch16_224", window_size=4).eval()
    img = torch.randn(1, 3, 64, 64)  # 4 x 4 tokens: one window
    m = vit.model
    with torch.no_grad():
        got = vit(img)["last_feat"]
        from timm.layers import resample_abs_pos_embed

        t = m.patch_embed(img)
        pos = resample_abs_pos_embed(m.pos_embed[:, 1:], new_size=(4, 4), old_size=m.patch_embed.grid_size,
                                     num_prefix_tokens=0)
        t = m.blocks(t.flatten(1, 2) + pos)
    assert torch.allclose(got.flatten(2).transpose(1, 2), t, atol=1e-5)


def test_configs_that_disagree_with_their_weights_are_refused():
    from rdet.core.errors import ConfigError
    from rdet.detection.timm_backbones import check_timm_config
    from rdet.detection.train import build_cfg

    def cfg(name, *opts):
        return build_cfg(str(CONFIGS / name), list(opts))

    imagenet = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
    check_timm_config(cfg("demo_mask_convnext_atto_fpn.yaml"), {"arch": "convnext_atto", **imagenet})
    check_timm_config(cfg("coco_mask_swin_t_fpn_1x.yaml"), {"arch": "swin_tiny", **imagenet})  # same timm model
    cases = [
        (cfg("demo_mask_convnext_atto_fpn.yaml"), {"arch": "vit_tiny"}, "MODEL.TIMM.ARCH is convnext_atto"),
        (cfg("demo_mask_r18_fpn.yaml"), {"arch": "convnext_atto"}, "build_timm_fpn_backbone"),
        (cfg("coco_mask_convnext_t_fpn_1x.yaml"), {"arch": "convnext_tiny_convstem"},  # another stem
         "MODEL.TIMM.ARCH is convnext_tiny"),
        (cfg("demo_mask_vit_t_sfp.yaml"), {"arch": "vit_tiny", "mean": [0.5] * 3, "std": [0.5] * 3},
         "MODEL.PIXEL_MEAN"),
        (cfg("demo_mask_convnext_atto_fpn.yaml", "MODEL.BACKBONE.FREEZE_AT", "2"), None, "FREEZE_AT 2"),
        (cfg("demo_mask_convnext_atto_fpn.yaml", "MODEL.TIMM.ARCH", "vit_tiny"), None,
         "use build_timm_vit_sfp_backbone"),
    ]
    for c, meta, words in cases:
        with pytest.raises(ConfigError, match=words.replace(".", r"\.")):
            check_timm_config(c, meta)
