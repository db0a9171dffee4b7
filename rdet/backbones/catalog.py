"""The released robust ImageNet models of Salman et al. (2020), and their download.

Names are ``{arch}_{norm}_eps{eps}`` with the registry's arch names and eps as the paper prints it
(L2: pixel-scale radius, e.g. ``resnet50_l2_eps3``; Linf: in 1/255 units, e.g.
``resnet50_linf_eps4``). ``CatalogEntry.eps`` is always the radius for images in [0, 1].

Downloads go to torch.hub's cache (``$TORCH_HOME/hub/checkpoints/rdet``) through
``torch.hub.download_url_to_file`` (temp file + rename, optional sha256 prefix check). Set
``RDET_WEIGHTS_URL`` to a mirror (any ``http(s)://`` or ``file://`` base) when the default host is
unreachable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

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


CATALOG: Dict[str, CatalogEntry] = _build_catalog()
# The release's own file stems (``densenet_l2_eps3``, ``resnet50_linf_eps4.0``) work as names too.
_ALIASES = {Path(e.file_name).stem: e.name for e in CATALOG.values()}


def get_entry(name: str) -> Optional[CatalogEntry]:
    """The entry for a catalog name or release file stem, else ``None``."""
    return CATALOG.get(name) or CATALOG.get(_ALIASES.get(name, ""))


def cache_dir() -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / "rdet"


def weights_url(entry: CatalogEntry) -> str:
    base = os.environ.get("RDET_WEIGHTS_URL", DEFAULT_BASE_URL)
    return base.rstrip("/") + "/" + entry.file_name


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
    return dest
