"""The released robust ImageNet models of Salman et al. (2020), and their download.

Names are ``{arch}_{norm}_eps{eps}`` with the registry's arch names and eps as the paper prints it
(L2: pixel-scale radius, e.g. ``resnet50_l2_eps3``; Linf: in 1/255 units, e.g.
``resnet50_linf_eps4``). ``CatalogEntry.eps`` is always the radius for images in [0, 1].

It also holds the released robust ConvNeXt, Swin and ViT models of RobustBench's ImageNet Linf
4/255 table (Singh et al. 2023, Liu et al. 2023, Mo et al. 2022, Rodriguez-Munoz et al. 2024),
named by their RobustBench ids (``Singh2023Revisiting_ConvNeXt-T-ConvStem``), each with its
published clean and AutoAttack accuracy and source (``robustbench_imagenet_linf.csv``, RobustBench's
leaderboard data copied into the package), the input normalisation its model applies and its test
preprocessing, as RobustBench's ``model_zoo/imagenet.py`` defines them.

Downloads go to torch.hub's cache (``$TORCH_HOME/hub/checkpoints/rdet``) through
``torch.hub.download_url_to_file`` (temp file + rename, optional sha256 prefix check). Set
``RDET_WEIGHTS_URL`` to a mirror (any ``http(s)://`` or ``file://`` base) when the default host is
unreachable. The RobustBench models are hosted on Google Drive (the ids RobustBench uses), fetched
through Drive's direct-download endpoint; their sha256 digests are not known to rdet (none is
published), so those downloads are checked only for being a PyTorch file.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

from rdet.core.errors import CheckpointError

DEFAULT_BASE_URL = "https://huggingface.co/madrylab/robust-imagenet-models/resolve/main/"

# The grid the paper released (its Tables 3 and 4; the release README for file names).
_L2_EPS = (0, 0.01, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 3, 5)
_LINF_EPS_255 = (0.5, 1, 2, 4, 8)
_RESNETS = ("resnet18", "resnet50", "wide_resnet50_2", "wide_resnet50_4")
_LINF_RESNETS = ("resnet18", "resnet50", "wide_resnet50_2")
# registry arch -> the prefix the release used in its file names
_OTHER_ARCHS = {"resnext50_32x4d": "resnext50_32x4d", "densenet161": "densenet", "vgg16_bn": "vgg16_bn",
                "mobilenet_v2": "mobilenet", "shufflenet_v2_x1_0": "shufflenet", "mnasnet1_0": "mnasnet"}


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    arch: str  # registry name
    norm: str  # "l2" or "linf"
    eps: float  # radius for images in [0, 1]
    file_name: str
    sha256: Optional[str] = None  # full digest or prefix, when known
    url: Optional[str] = None  # where the release lives, when not under DEFAULT_BASE_URL
    # Input normalisation (RGB, [0, 1] pixels) the release's model applies, when its file does not
    # say and it is not the arch's default: Singh et al.'s ConvStem models take raw [0, 1] input.
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    # RobustBench's test transform: BicubicRes256Crop224 | Res224 | Res256Crop224 (None: the paper's)
    preprocessing: Optional[str] = None
    published_clean: Optional[float] = None  # top-1 % as published (RobustBench: its 5000-image subset)
    published_autoattack: Optional[float] = None  # AutoAttack top-1 % at eps
    source: Optional[str] = None  # paper link
    robustbench_id: Optional[str] = None
    release: str = "salman2020"  # salman2020 (the paper's grid) | robustbench (the timm families' releases)

    @property
    def eps_label(self) -> str:
        """eps as the paper prints it: ``3`` (L2) or ``4/255`` (Linf)."""
        return eps_label(self.norm, self.eps)


def eps_label(norm: str, eps: float) -> str:
    if norm == "linf" and eps > 0:
        return f"{eps * 255:g}/255"
    return f"{eps:g}"


def _build_catalog() -> Dict[str, CatalogEntry]:
    entries = []
    for arch in _RESNETS:
        for e in _L2_EPS:
            entries.append(CatalogEntry(f"{arch}_l2_eps{e:g}", arch, "l2", float(e), f"{arch}_l2_eps{e:g}.ckpt"))
    for arch in _LINF_RESNETS:
        for e in _LINF_EPS_255:
            entries.append(CatalogEntry(f"{arch}_linf_eps{e:g}", arch, "linf", e / 255.0,
                                        f"{arch}_linf_eps{float(e):.1f}.ckpt"))
    for arch, prefix in _OTHER_ARCHS.items():
        for e in (0, 3):
            entries.append(CatalogEntry(f"{arch}_l2_eps{e}", arch, "l2", float(e), f"{prefix}_l2_eps{e}.ckpt"))
    return {e.name: e for e in entries}


_GDRIVE = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
_RAW = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
# RobustBench id -> (registry arch, Google Drive id, normalisation (None: ImageNet's), preprocessing), as
# robustbench/model_zoo/imagenet.py (commit 78fcc9e) builds them. Singh et al.'s ConvNeXt and ViT-B
# ConvStem models are built there without a normaliser (and measured so by RobustBench); its ViT-S
# ConvStem and all others are wrapped in normalize_model(ImageNet mean, std).
_ROBUSTBENCH = {
    "Singh2023Revisiting_ConvNeXt-T-ConvStem": ("convnext_tiny_convstem", "1-FjtOF6LJ3-bf4VezsmWwncCxYSx-USP", _RAW,
                                                "BicubicRes256Crop224"),
    "Singh2023Revisiting_ConvNeXt-S-ConvStem": ("convnext_small_convstem", "1-ZrMYajCCnrtV4oT0wa3qJJoQy1nUSnL", _RAW,
                                                "BicubicRes256Crop224"),
    "Singh2023Revisiting_ConvNeXt-B-ConvStem": ("convnext_base_convstem", "1-lE-waaVvfL7lgBrydmZIM9UJimmHnVe", _RAW,
                                                "BicubicRes256Crop224"),
    "Singh2023Revisiting_ConvNeXt-L-ConvStem": ("convnext_large_convstem", "10-YOVdM2EQjHemSi9x2H44qKRSOXVQmh", _RAW,
                                                "BicubicRes256Crop224"),
    "Singh2023Revisiting_ViT-S-ConvStem": ("vit_small_convstem", "1-1sUYXnj6bDXacIKI3KKqn4rlkmL-ZI2", None,
                                           "BicubicRes256Crop224"),
    "Singh2023Revisiting_ViT-B-ConvStem": ("vit_base_convstem", "1-JBbfi_eH3tKMXObvPPHprrZae0RiQGT", _RAW,
                                           "BicubicRes256Crop224"),
    "Liu2023Comprehensive_ConvNeXt-B": ("convnext_base", "10-nSm-qUftvfKXHeOAakBQl8rxm-jCbk", None,
                                        "BicubicRes256Crop224"),
    "Liu2023Comprehensive_ConvNeXt-L": ("convnext_large", "1dIPLNfdQtAnqZrKPyuy3_zDI-FVgJ2FH", None,
                                        "BicubicRes256Crop224"),
    "Liu2023Comprehensive_Swin-B": ("swin_base", "1-4mtxQCkThJUVdS3wvQ6NnmMZuySqR3c", None, "BicubicRes256Crop224"),
    "Liu2023Comprehensive_Swin-L": ("swin_large", "1-57sQfcrsDsslfDR18nRD7FnpQmsSBk7", None, "BicubicRes256Crop224"),
    "Mo2022When_Swin-B": ("swin_base", "1-SXi4Z2X6Zo_j8EO4slJcBMXNej8fKUd", None, "Res224"),
    "Mo2022When_ViT-B": ("vit_base", "1-dUFdvDBflqMsMLjZv3wlPJTm-Jm7net", None, "Res224"),
    "RodriguezMunoz2024Characterizing_Swin-B": ("swin_base", "1-BSUjoFXx3PP-TfeE5fjbofO2lLyUf56", None,
                                                "BicubicRes256Crop224"),
    "RodriguezMunoz2024Characterizing_Swin-L": ("swin_large", "1-Dc9WhPU2wv4OMskLo1U57n5O8VbpNXv", None,
                                                "BicubicRes256Crop224"),
}
# Not in the catalog: Xu2024MIMIR (its own Swin code), Amini2024MeanSparse (post-hoc sparsified models),
# Bai2024MixedNUTS (an ensemble), Debenedetti2022Light (XCiT, registered in timm by robustbench only).


def robustbench_table() -> Dict[str, Dict[str, str]]:
    """RobustBench's ImageNet Linf leaderboard rows by model id (``rdet/paper/robustbench_imagenet_linf.csv``)."""
    from rdet.paper import read_table

    return {row["model"]: row for row in read_table("robustbench_linf")}


def _robustbench_entries():
    table = robustbench_table()
    for rb_id, (arch, gdrive, norm, prep) in _ROBUSTBENCH.items():
        row = table[rb_id]
        num, den = row["eps"].split("/")
        yield CatalogEntry(rb_id, arch, "linf", float(num) / float(den), f"{rb_id}.pt", url=_GDRIVE + gdrive,
                           mean=norm[0] if norm else None, std=norm[1] if norm else None, preprocessing=prep,
                           published_clean=float(row["clean_acc"]), published_autoattack=float(row["autoattack_acc"]),
                           source=row["link"], robustbench_id=rb_id, release="robustbench")


# The paper's own Linf 4/255 models are on RobustBench's leaderboard too: their published numbers.
_PAPER_ON_ROBUSTBENCH = {"resnet18_linf_eps4": "Salman2020Do_R18", "resnet50_linf_eps4": "Salman2020Do_R50",
                         "wide_resnet50_2_linf_eps4": "Salman2020Do_50_2"}


def _with_published(entries: Dict[str, CatalogEntry]) -> Dict[str, CatalogEntry]:
    table = robustbench_table()
    for name, rb_id in _PAPER_ON_ROBUSTBENCH.items():
        row = table[rb_id]
        entries[name] = dataclasses.replace(entries[name], published_clean=float(row["clean_acc"]),
                                            published_autoattack=float(row["autoattack_acc"]), source=row["link"],
                                            robustbench_id=rb_id, preprocessing="Res256Crop224")
    return entries


CATALOG: Dict[str, CatalogEntry] = _with_published(_build_catalog())
CATALOG.update({e.name: e for e in _robustbench_entries()})
# The release's own file stems (``densenet_l2_eps3``, ``resnet50_linf_eps4.0``) work as names too.
_ALIASES = {Path(e.file_name).stem: e.name for e in CATALOG.values()}


def get_entry(name: str) -> Optional[CatalogEntry]:
    """The entry for a catalog name or release file stem, else ``None``."""
    return CATALOG.get(name) or CATALOG.get(_ALIASES.get(name, ""))


def cache_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / "rdet"


def weights_url(entry: CatalogEntry) -> str:
    """``$RDET_WEIGHTS_URL/<file_name>`` when a mirror is set, else the release's own address."""
    base = os.environ.get("RDET_WEIGHTS_URL")
    if base is None and entry.url:
        return entry.url
    return (base or DEFAULT_BASE_URL).rstrip("/") + "/" + entry.file_name


def _looks_like_torch_file(path: Path) -> bool:
    """A zip archive (torch.save since 1.6) or a legacy pickle: what an HTML error page is not."""
    with open(path, "rb") as f:
        head = f.read(4)
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def download(name: str, dest_dir: Optional[Path] = None, progress: bool = True) -> Path:
    """Path of the cached weights of catalog model ``name``, downloading them if needed.

    Verifies ``entry.sha256`` when the catalog knows it. Raises :class:`CheckpointError` for an
    unknown name, an unreachable URL or a checksum mismatch; never leaves a partial file.
    """
    import torch.hub

    entry = get_entry(name)
    if entry is None:
        raise CheckpointError(f"{name!r} is neither a file nor a catalog model (see `python -m rdet backbones list`)")
    dest_dir = Path(dest_dir) if dest_dir else cache_dir()
    dest = dest_dir / entry.file_name
    if dest.is_file():
        return dest
    dest_dir.mkdir(parents=True, exist_ok=True)
    url = weights_url(entry)
    try:
        torch.hub.download_url_to_file(url, str(dest), hash_prefix=entry.sha256, progress=progress)
    except RuntimeError as e:  # torch.hub's hash mismatch
        raise CheckpointError(f"{entry.name}: download from {url} failed its checksum: {e}") from None
    except OSError as e:  # URLError is an OSError
        raise CheckpointError(f"{entry.name}: cannot download {url}: {e}; set RDET_WEIGHTS_URL to a "
                              f"mirror or pass a local file") from None
    if not _looks_like_torch_file(dest):  # e.g. a host's HTML page instead of the file (no sha256 to catch it)
        dest.unlink()
        raise CheckpointError(f"{entry.name}: {url} did not return a PyTorch file (an error or sign-in page?); "
                              f"download it yourself and pass the file")
    return dest
