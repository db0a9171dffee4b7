"""``python -m rdet backbones [list|catalog]``: the registered architectures and the catalog of
released robust models."""
from __future__ import annotations

from typing import Optional, Sequence

from rdet.backbones import CATALOG, get_spec, list_backbones
from rdet.backbones.catalog import weights_url
from rdet.cli import ArgumentParser, entry_point


def _main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="python -m rdet backbones", description=__doc__)
    p.add_argument("what", nargs="?", choices=("list", "catalog"), default="list")
    args = p.parse_args(argv)
    if args.what == "list":
        print(f"{'arch':<24} {'family':<10} {'paper name':<22} {'features':>8}  {'classifier':<13} {'norm':<9} "
              f"{'test crop':<15} {'recipe':<16} detection stages (stride:channels)")
        for name in list_backbones():
            s = get_spec(name)
            test = f"{s.interpolation} {s.crop_pct:.3f}"
            geo = " ".join(f"{st.stride}:{st.channels}" for st in s.stages) or "-"
            if s.d2:
                geo += f" (R{s.d2.depth} w{s.d2.width_per_group} g{s.d2.num_groups})"
            print(f"{name:<24} {s.family:<10} {s.paper_name:<22} {s.feature_dim:>8}  {s.classifier:<13} "
                  f"{'batchnorm' if s.batchnorm else 'layernorm':<9} {test:<15} {s.recipe:<16} {geo}")
    else:
        print(f"{'name':<42} {'arch':<24} {'norm':<5} {'eps':>8}  {'clean':>6} {'AA':>6}  url")
        for e in CATALOG.values():
            pub = (f"{e.published_clean:>6.2f} {e.published_autoattack:>6.2f}" if e.published_clean is not None
                   else f"{'-':>6} {'-':>6}")
            print(f"{e.name:<42} {e.arch:<24} {e.norm:<5} {e.eps_label:>8}  {pub}  {weights_url(e)}")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
