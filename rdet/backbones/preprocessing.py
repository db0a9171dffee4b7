"""What a model's weights expect of their input: the normalisation inside the network and the
test-time resize/crop they were evaluated with.

Both are properties of the *weights*, not only of the architecture: Singh et al.'s ConvNeXt
ConvStem models take raw [0, 1] input where the same arch trained elsewhere takes ImageNet's
mean/std, and RobustBench evaluates most of its models with a bicubic resize but Mo et al.'s
Swin-B/ViT-B by squashing to 224 x 224. So the answer comes from, in order: what the file says
(a normaliser saved with the weights, rdet's own metadata), the catalog entry of a release
named by its catalog name, an explicit setting (``MODEL.INPUT_NORM``, ``DATA.TEST_*``), and only
then the arch's default; where the arch's releases disagree and nothing says which, rdet refuses
instead of guessing (:func:`resolve_input_norm`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

from rdet.backbones.registry import IMAGENET_MEAN, IMAGENET_STD, get_spec
from rdet.core.errors import CheckpointError

Stats = Tuple[Tuple[float, float, float], Tuple[float, float, float]]
# MODEL.INPUT_NORM's named normalisations (RGB, pixels in [0, 1])
INPUT_NORMS: Dict[str, Stats] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "raw": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}


def norm_name(mean: Sequence[float], std: Sequence[float]) -> Optional[str]:
    """The :data:`INPUT_NORMS` name of ``(mean, std)``, if it is one of them."""
    for name, (m, s) in INPUT_NORMS.items():
        if max(abs(a - b) for a, b in zip(list(mean) + list(std), m + s)) < 1e-6:
            return name
    return None


def release_norms(arch: str) -> Dict[str, str]:
    """Normalisation name -> who uses it, over ``arch``'s default and its catalog releases."""
    from rdet.backbones.catalog import CATALOG

    spec = get_spec(arch)
    out = {norm_name(spec.mean, spec.std) or "custom": f"{arch}'s default"}
    for e in CATALOG.values():
        if e.arch == arch:
            name = norm_name(e.mean, e.std) if e.mean is not None else norm_name(spec.mean, spec.std)
            out.setdefault(name or "custom", e.name)
    return out


def resolve_input_norm(meta: Dict[str, Any], arch: str, entry, requested: str, what: str) -> None:
    """Fill ``meta['mean']``, ``meta['std']`` and ``meta['input_norm']`` (where they come from).

    ``meta``: the checkpoint's metadata (``mean``/``std`` present when the file holds a
    normaliser); ``entry``: its catalog entry when the file carries a catalog name; ``requested``:
    ``MODEL.INPUT_NORM`` ("" = unset). Refuses, in one line naming ``what`` (the file): a request
    that contradicts the file's normaliser, and a file that says nothing of an arch whose releases
    differ in normalisation when nothing else says which."""
    if meta.get("mean") is not None and meta.get("std") is not None:
        have = norm_name(meta["mean"], meta["std"])
        if requested and have != requested:
            raise CheckpointError(f"{what}: the file's own normaliser is {have or meta['mean']}, but MODEL.INPUT_NORM "
                                  f"is {requested}: drop the setting (the file's is what its weights were trained with)")
        meta["input_norm"] = {"name": have or "custom", "source": "file"}
        return
    if requested:
        mean, std = INPUT_NORMS[requested]
        source = "MODEL.INPUT_NORM"
    elif entry is not None:
        spec = get_spec(arch)
        mean, std = (entry.mean, entry.std) if entry.mean is not None else (spec.mean, spec.std)
        source = f"catalog {entry.name}"
    else:
        norms = release_norms(arch)
        if len(norms) > 1:
            which = "; ".join(f"{n}: {who}" for n, who in norms.items())
            raise CheckpointError(f"{what}: holds no input normaliser and is not a catalog file name, and {arch}'s "
                                  f"releases differ ({which}): set MODEL.INPUT_NORM (--input-norm) to "
                                  f"{' or '.join(n for n in norms if n in INPUT_NORMS)}")
        spec = get_spec(arch)
        mean, std = spec.mean, spec.std
        source = f"{arch}'s default"
    meta["mean"], meta["std"] = [float(v) for v in mean], [float(v) for v in std]
    meta["input_norm"] = {"name": norm_name(mean, std) or "custom", "source": source}


@dataclass(frozen=True)
class Preprocessing:
    """Test-time preprocessing of RGB images before the model: ``Resize(resize)`` (short side) and
    ``CenterCrop(crop)``, or with ``crop`` None ``Resize((resize, resize))`` (squash, no crop)."""

    resize: int
    crop: Optional[int]
    interpolation: str  # bilinear | bicubic
    source: str = ""  # what it follows: "catalog <name> (<RobustBench name>)", "<arch>'s default", ...
    overrides: Tuple[str, ...] = ()  # the DATA.TEST_* settings that differ from the weights' own

    def record(self) -> Dict[str, Any]:
        d = asdict(self)
        d["overrides"] = list(self.overrides)
        return d


# RobustBench's test transforms (robustbench/data.py PREPROCESSINGS) as (interpolation, crop fraction,
# squash): Resize(224 / fraction) then CenterCrop(224), or Resize((224, 224)).
ROBUSTBENCH_PREPROCESSINGS = {
    "Res256Crop224": ("bilinear", 224 / 256, False),
    "BicubicRes256Crop224": ("bicubic", 224 / 256, False),
    "Res224": ("bilinear", 1.0, True),
}


def weights_preprocessing(arch: str, entry=None) -> Tuple[str, float, bool, str]:
    """``(interpolation, crop fraction, squash, source)`` the weights were evaluated with: the
    catalog release's RobustBench preprocessing, else the arch's (torchvision: bilinear 0.875,
    timm: bicubic 224/256)."""
    if entry is not None and entry.preprocessing:
        interp, frac, squash = ROBUSTBENCH_PREPROCESSINGS[entry.preprocessing]
        return interp, frac, squash, f"catalog {entry.name} ({entry.preprocessing})"
    spec = get_spec(arch)
    return spec.interpolation, spec.crop_pct, False, f"{arch}'s default"


def preprocessing_for(size: int, arch: str, entry=None, resize: int = 0, interpolation: str = "auto",
                       crop: str = "auto") -> Preprocessing:
    """The preprocessing a test image of output side ``size`` gets: the weights' own
    (:func:`weights_preprocessing`) with each of ``resize`` (0 = auto), ``interpolation`` and
    ``crop`` ("auto" = the weights', "center", "squash") that is set applied and named in
    ``overrides`` when it differs from the weights' own."""
    w_interp, frac, w_squash, source = weights_preprocessing(arch, entry)
    own_resize = size if w_squash else int(round(size / frac))
    squash = w_squash if crop == "auto" else crop == "squash"
    interp = w_interp if interpolation == "auto" else interpolation
    out_resize = resize or (size if squash else int(round(size / frac)))
    overrides = []
    if squash != w_squash:
        overrides.append(f"DATA.TEST_CROP {'squash' if squash else 'center'}")
    if out_resize != own_resize:
        overrides.append(f"DATA.TEST_RESIZE {out_resize}")
    if interp != w_interp:
        overrides.append(f"DATA.TEST_INTERPOLATION {interp}")
    return Preprocessing(out_resize, None if squash else size, interp, source, tuple(overrides))
