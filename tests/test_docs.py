"""The README stays a front page (what, why, the two commands, a quick start, where the docs are)
and every page of the reference in docs/ is reachable from it; relative links resolve."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)#\s]+)\)")


def _links(page: Path):
    return [m for m in LINK.findall(page.read_text()) if not m.startswith(("http://", "https://"))]


def test_readme_is_short_and_links_every_docs_page():
    readme = ROOT / "README.md"
    assert len(readme.read_text().splitlines()) <= 120
    linked = {(ROOT / link).resolve() for link in _links(readme)}
    assert {p.resolve() for p in (ROOT / "docs").glob("*.md")} <= linked
    for cmd in ("make demo", "make test", "python -m rdet.classify", "python tools/convert_backbone.py",
                "python tools/train_det.py --config-file configs/coco_r50_fpn_3x.yaml"):
        assert cmd in readme.read_text(), cmd


def test_every_relative_link_in_the_docs_resolves():
    for page in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]:
        for link in _links(page):
            assert (page.parent / link).exists(), f"{page.name}: {link}"
