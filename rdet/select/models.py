"""Which models a selection ranks: catalog names, glob patterns over them, or checkpoint files."""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rdet.backbones import CATALOG, download, get_entry, get_spec, load_checkpoint
from rdet.core.errors import ConfigError

_GLOB = set("*?[")


@dataclass(frozen=True)
class ModelRef:
    """One candidate backbone: ``weights`` is a catalog name or an absolute file path."""

    name: str
    weights: str
    arch: Optional[str] = None
    norm: Optional[str] = None
    eps: Optional[float] = None


def _catalog_ref(name: str) -> ModelRef:
    e = CATALOG[name]
    return ModelRef(e.name, e.name, e.arch, e.norm, e.eps)


def _file_ref(path: Path, allow_pickle: bool) -> ModelRef:
    loaded = load_checkpoint(path, allow_pickle=allow_pickle)  # refuses unreadable files up front
    return ModelRef(path.stem, str(path.resolve()), loaded.arch, loaded.meta.get("norm"), loaded.meta.get("eps"))


def resolve_models(patterns: Sequence[str], archs: Sequence[str] = (), norm: Optional[str] = None,
                   allow_pickle: bool = False) -> List[ModelRef]:
    """Expand ``patterns`` (file, catalog name or ``fnmatch`` glob over catalog names; none: the
    whole catalog) and keep those of ``archs`` / ``norm`` when given. Raises :class:`ConfigError`
    for a pattern that names nothing or a filter that leaves nothing."""
    for a in archs:
        get_spec(a)  # an unknown architecture fails here, listing the registry
    refs: List[ModelRef] = []
    for pat in patterns or ["*"]:
        p = Path(pat).expanduser()
        if p.is_file():
            refs.append(_file_ref(p, allow_pickle))
        elif _GLOB & set(pat):
            names = sorted(n for n in CATALOG if fnmatch.fnmatchcase(n, pat))
            if not names:
                raise ConfigError(f"--models {pat}: matches no catalog model (python -m rdet backbones catalog)")
            refs += [_catalog_ref(n) for n in names]
        elif get_entry(pat) is not None:
            refs.append(_catalog_ref(get_entry(pat).name))
        else:
            raise ConfigError(f"--models {pat}: neither a file nor a catalog model or pattern "
                              f"(python -m rdet backbones catalog)")
    kept = [r for r in refs if (not archs or r.arch in archs) and (norm is None or r.norm == norm)]
    if not kept:
        raise ConfigError(f"no model left after the filters (archs {', '.join(archs) or 'any'}, norm {norm or 'any'})")
    by_name: Dict[str, ModelRef] = {}
    for r in kept:
        other = by_name.setdefault(r.name, r)
        if other.weights != r.weights:
            raise ConfigError(f"two models are named {r.name}: {other.weights} and {r.weights}; rename one file")
    return list(by_name.values())


def model_file(weights: str, allow_pickle: bool = False) -> Tuple[Path, Dict]:
    """``(local file, {arch, norm, eps})`` of a catalog name (downloaded if needed) or a file."""
    entry = get_entry(weights)
    if entry is not None and not Path(weights).is_file():
        return download(entry.name), {"arch": entry.arch, "norm": entry.norm, "eps": entry.eps, "catalog": entry.name}
    loaded = load_checkpoint(weights, allow_pickle=allow_pickle)
    return Path(weights), {k: loaded.meta.get(k) for k in ("arch", "norm", "eps")}
