"""benchmarks/gpu_check.py --cpu: the GPU check's whole sequence, tiny, on CPU (torchrun pretraining
in two precisions, transfer, evaluation, conversion, detection training and evaluation, the
throughput rows) passes and writes its table and results."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1200)
def test_cpu_rehearsal(tmp_path, fashion_mnist_root):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--cpu", "--out", str(out),
                           "--work", str(tmp_path / "work"), "--data-root", str(fashion_mnist_root)],
                          capture_output=True, text=True, timeout=1150)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    res = json.loads((out / "results.json").read_text())
    steps = {r["step"]: r for r in res["rows"]}
    assert all(r["ok"] for r in res["rows"])
    for name in ("environment", "pretrain fp32 (torchrun)", "pretrain bf16 channels_last (torchrun)",
                 "classify fixed (torchrun)", "classify full (torchrun)", "evaluate", "convert resnet18",
                 "convert resnet50 (random)", "train_det Mask R-CNN R18-FPN", "fast path / fp32 (PGD-3 step)"):
        assert name in steps, sorted(steps)
    assert "world size 1" in steps["pretrain fp32 (torchrun)"]["detail"]
    bench = [r for r in res["rows"] if r["step"].startswith("ResNet-18")]
    assert len(bench) == 3 and all(r["img_per_s"] > 0 for r in bench)
    assert any(r["step"].startswith("detectron2 R50-FPN") and r["s_per_iter"] > 0 for r in res["rows"])
    table = (out / "table.txt").read_text()
    assert table.startswith("rdet gpu_check on CPU") and f"{len(res['rows'])} of {len(res['rows'])} passed" in table
