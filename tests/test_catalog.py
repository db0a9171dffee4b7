"""The robust-model catalog and its download (through a file:// mirror and a loopback HTTP
server: nothing else is reachable here)."""
import dataclasses
import functools
import hashlib
import http.server
import threading

import pytest
import torch

from rdet.backbones import CATALOG, create_classifier, download, get_entry, get_spec
from rdet.backbones import catalog as catalog_mod
from rdet.backbones.robustness_format import save_robustness_checkpoint
from rdet.core.errors import CheckpointError


def test_catalog_covers_the_release():
    paper = [e for e in CATALOG.values() if e.release == "salman2020"]
    l2 = [e for e in paper if e.norm == "l2"]
    linf = [e for e in paper if e.norm == "linf"]
    assert len(l2) == 4 * 10 + 6 * 2 and len(linf) == 3 * 5
    assert get_entry("resnet50_l2_eps3").file_name == "resnet50_l2_eps3.ckpt"
    assert get_entry("resnet50_linf_eps4").file_name == "resnet50_linf_eps4.0.ckpt"
    assert get_entry("resnet50_linf_eps4").eps == pytest.approx(4 / 255)
    assert get_entry("densenet_l2_eps3").arch == "densenet161"  # the release's own file stem
    for e in CATALOG.values():
        get_spec(e.arch)


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A directory holding resnet18_l2_eps3.ckpt in the release layout; the cache is in tmp."""
    src = tmp_path / "mirror"
    src.mkdir()
    sd = get_spec("resnet18").builder(1000).state_dict()
    save_robustness_checkpoint(sd, "resnet18", src / "resnet18_l2_eps3.ckpt")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    return src, sd


def _with_sha(monkeypatch, name, sha):
    monkeypatch.setitem(CATALOG, name, dataclasses.replace(CATALOG[name], sha256=sha))


def test_download_from_file_url_and_load(mirror, monkeypatch):
    src, sd = mirror
    monkeypatch.setenv("RDET_WEIGHTS_URL", src.as_uri())
    sha = hashlib.sha256((src / "resnet18_l2_eps3.ckpt").read_bytes()).hexdigest()
    _with_sha(monkeypatch, "resnet18_l2_eps3", sha)
    path = download("resnet18_l2_eps3", progress=False)
    assert path.parent == catalog_mod.cache_dir() and path.is_file()
    model = create_classifier("resnet18", weights="resnet18_l2_eps3")
    assert torch.equal(model.body.conv1.weight, sd["conv1.weight"])


def test_checksum_mismatch_leaves_nothing(mirror, monkeypatch):
    src, _ = mirror
    monkeypatch.setenv("RDET_WEIGHTS_URL", src.as_uri())
    _with_sha(monkeypatch, "resnet18_l2_eps3", "0" * 64)
    with pytest.raises(CheckpointError, match="checksum"):
        download("resnet18_l2_eps3", progress=False)
    assert not list(catalog_mod.cache_dir().glob("*"))


def test_download_over_loopback_http(mirror, monkeypatch):
    src, sd = mirror
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(src))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv("RDET_WEIGHTS_URL", f"http://127.0.0.1:{server.server_port}/")
        path = download("resnet18_l2_eps3", progress=False)
        assert path.read_bytes() == (src / "resnet18_l2_eps3.ckpt").read_bytes()
        with pytest.raises(CheckpointError, match="cannot download"):
            download("resnet50_l2_eps3", progress=False)  # 404 on the mirror
    finally:
        server.shutdown()
    assert not (catalog_mod.cache_dir() / "resnet50_l2_eps3.ckpt").exists()


def test_unknown_name(tmp_path):
    with pytest.raises(CheckpointError, match="neither a file nor a catalog model"):
        download("resnet50_l2_eps42")
