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
        print(f"{'arch':<20} {'paper name':<14} {'features':>8}  classifier      detectron2")
        for name in list_backbones():
            s = get_spec(name)
            d2 = f"R{s.d2.depth} w{s.d2.width_per_group} g{s.d2.num_groups}" if s.d2 else "-"
            print(f"{name:<20} {s.paper_name:<14} {s.feature_dim:>8}  {s.classifier:<15} {d2}")
    else:
        print(f"{'name':<32} {'arch':<20} {'norm':<5} {'eps':>8}  url")
        for e in CATALOG.values():
            print(f"{e.name:<32} {e.arch:<20} {e.norm:<5} {e.eps_label:>8}  {weights_url(e)}")
    return 0


main = entry_point(_main)


if __name__ == "__main__":
    raise SystemExit(main())
