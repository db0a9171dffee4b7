"""rdet on one CUDA GPU, end to end, in at most ~8 minutes; ``--cpu`` rehearses the same sequence
tiny on CPU (the test suite runs that).

    python benchmarks/gpu_check.py [--wheels .whl] --out gpu_check_out      # a machine with one GPU
    python benchmarks/gpu_check.py --cpu --out /tmp/cpu_check                # anywhere

Needs torch and torchvision already installed (any torch >= 2.1; this script never installs
torch). ``--wheels DIR`` installs the other dependencies that do not import, from wheels in DIR
(``pip install --no-index --no-deps --target SITE``), and detectron2 through
``tools/install_detectron2.sh`` (its PyPI route, offline: ``PIP_NO_INDEX=1``,
``PIP_FIND_LINKS="DIR DIR/d2"``, so ``DIR/d2`` must hold ``sal_detectron2-0.7.2-cp310-none-any.whl``).

Each step runs as a subprocess with a timeout, under one time budget (``--budget-s``; the
throughput cases of step 6 share one):

1. adversarial pretraining (ResNet-18, digits, L2 PGD-3) through ``torchrun --nproc_per_node 1``
   in fp16 (GradScaler), then in bf16 with channels_last (CPU: fp32, then bf16 + channels_last);
2. fixed-feature and full-network transfer through torchrun; 3. ``rdet evaluate``;
4. ``tools/convert_backbone.py`` on that ResNet-18 and on a random-init torchvision ResNet-50;
5. ``tools/train_det.py``: Mask R-CNN R50-FPN (CPU: R18-FPN) on the offline composed detection set,
   20 iterations (CPU: 2) then COCO evaluation;
6. throughput on this device: a ResNet-50 PGD-3 adversarial training step (rdet's step and
   trainer, batch 128 at 224 px, random data) with rdet's fast path (bf16 autocast +
   channels_last) and in fp32 NCHW, a standard step, and detectron2's s/iter for R50-FPN
   (Faster R-CNN, batch 8, 800x1216, random boxes); on CPU a ResNet-18 at 32 px, batch 2, and
   detectron2 at batch 2, 64x64 (a rehearsal, not a measurement).

Prints one table (device, torch version, one row per step) and writes it with the results to
``--out`` (``table.txt``, ``results.json``, ``steps.log``). Exits 1 if any step failed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
# module -> distribution, for what rdet and detectron2 import
MODULES = {"fvcore": "fvcore", "yacs": "yacs", "iopath": "iopath", "pycocotools": "pycocotools",
           "omegaconf": "omegaconf", "hydra": "hydra-core", "antlr4": "antlr4-python3-runtime",
           "termcolor": "termcolor", "tabulate": "tabulate", "portalocker": "portalocker", "submitit": "submitit",
           "cloudpickle": "cloudpickle", "tqdm": "tqdm", "yaml": "pyyaml", "cv2": "opencv-python-headless",
           "sklearn": "scikit-learn", "skimage": "scikit-image", "matplotlib": "matplotlib", "PIL": "pillow",
           "numpy": "numpy", "tensorboard": "tensorboard"}

# sizes: (GPU, CPU)
SIZES = {"image": (32, 16), "batch": (128, 16), "max_train": (1024, 32), "max_test": (256, 16), "workers": (2, 0),
         "det_iters": (20, 2), "det_batch": (4, 2), "bench_arch": ("resnet50", "resnet18"), "bench_batch": (128, 2), "bench_size": (224, 32),
         "bench_warmup": (2, 1), "bench_steps": (5, 1), "d2_batch": (8, 2), "d2_hw": ((800, 1216), (64, 64)),
         "d2_iters": (10, 1)}
ARCH_LABEL = {"resnet50": "ResNet-50", "resnet18": "ResNet-18"}
# CPU detection: smaller test images and fewer detections (the mask head runs once per detection)
CPU_DET = ["INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
           "INPUT.MAX_SIZE_TEST", "64", "TEST.DETECTIONS_PER_IMAGE", "5", "MODEL.RPN.POST_NMS_TOPK_TEST", "50"]


class Check:
    """Runs the steps, keeps the rows and the log, enforces the time budget."""

    def __init__(self, args):
        self.args, self.cpu = args, args.cpu
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.work = Path(args.work or tempfile.mkdtemp(prefix="rdet_gpu_check_"))
        self.work.mkdir(parents=True, exist_ok=True)
        self.deadline = time.time() + args.budget_s
        self.rows: List[Dict] = []
        self.log = open(self.out / "steps.log", "w")
        site = [args.site] if args.wheels else []
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
                        PYTHONPATH=os.pathsep.join(site + [str(REPO)] + [p for p in [os.environ.get("PYTHONPATH")] if p]),
                        RDET_DATASETS=str(Path(args.data_root).absolute()) if args.data_root else str(self.work / "datasets"))
        if self.cpu:
            self.env["CUDA_VISIBLE_DEVICES"] = ""

    def size(self, key):
        return SIZES[key][1 if self.cpu else 0]

    def step(self, name: str, cmd: List[str], timeout: float, check: Optional[Callable[[], str]] = None,
             env: Optional[Dict[str, str]] = None) -> bool:
        """Run ``cmd``; the row passes when it exits 0 and ``check()`` (which returns the detail
        shown in the table, or raises) does not raise."""
        left = self.deadline - time.time()
        if left < 5:
            return self.add(name, False, 0.0, "not run: time budget exhausted")
        code, took, error = self.run(cmd, name, timeout, env)
        if error:
            return self.add(name, False, took, error)
        try:
            detail = check() if check else ""
        except Exception as e:  # a missing or malformed output file
            return self.add(name, False, took, f"ran, but {type(e).__name__}: {e}")
        return self.add(name, True, took, detail)

    def run(self, cmd: List[str], name: str, timeout: float, env: Optional[Dict[str, str]] = None):
        """``(exit code or None, seconds, error or "")`` of ``cmd`` under the budget, logged."""
        left = self.deadline - time.time()
        self.log.write(f"\n===== {name}: {' '.join(map(str, cmd))}\n")
        self.log.flush()
        start = time.time()
        try:
            proc = subprocess.run([str(c) for c in cmd], cwd=REPO, env=env or self.env, stdout=self.log,
                                  stderr=subprocess.STDOUT, timeout=min(timeout, left), text=True)
        except subprocess.TimeoutExpired:
            return None, time.time() - start, f"timed out after {min(timeout, left):.0f} s"
        took = time.time() - start
        return proc.returncode, took, f"exit code {proc.returncode}: {self._last_error()}" if proc.returncode else ""

    def add(self, name: str, ok: bool, seconds: float, detail: str, **extra) -> bool:
        self.rows.append({"step": name, "ok": ok, "seconds": round(seconds, 1), "detail": detail, **extra})
        print(f"{'ok  ' if ok else 'FAIL'} {name:<28} {seconds:6.1f} s  {detail}", flush=True)
        return ok

    def _last_error(self) -> str:
        self.log.flush()
        lines = [ln for ln in (self.out / "steps.log").read_text().splitlines() if ln.strip()]
        errs = [ln for ln in lines if re.search(r"Error|error:|Traceback", ln)]
        return (errs[-1] if errs else lines[-1] if lines else "no output")[:300]


# --- environment ---------------------------------------------------------------------------------
def _missing(chk: Check, modules) -> List[str]:
    code = ("import importlib.util, json, sys; print(json.dumps([m for m in sys.argv[1:] "
            "if importlib.util.find_spec(m) is None]))")
    proc = subprocess.run([sys.executable, "-c", code, *modules], env=chk.env, capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else list(modules)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def ensure_environment(chk: Check) -> None:
    args, start = chk.args, time.time()
    missing = _missing(chk, MODULES)
    if missing and args.wheels:
        want = {_norm(MODULES[m]) for m in missing}
        files = [w for w in sorted(Path(args.wheels).glob("*.whl")) if _norm(w.name.split("-")[0]) in want]
        if files:
            chk.step("install dependencies", [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                                              "--no-compile", "--no-cache-dir", "--upgrade", "--target", args.site,
                                              *files], 180, lambda: f"{len(files)} wheel(s) into {args.site}")
        missing = _missing(chk, MODULES)
    if "detectron2" in _missing(chk, ["detectron2"]) and args.wheels:
        wheels = Path(args.wheels).absolute()
        env = dict(chk.env, PYTHON=sys.executable, RDET_D2_ROUTE="pypi", PIP_NO_INDEX="1",
                   PIP_FIND_LINKS=f"{wheels} {wheels / 'd2'}")
        chk.step("install detectron2", ["bash", "tools/install_detectron2.sh"], 240, env=env)
        if "detectron2" in _missing(chk, ["detectron2"]):
            unpack_detectron2(chk, sorted((wheels / "d2").glob("sal_detectron2-*.whl")))
            script, unpacked = chk.rows[-2], chk.rows[-1]
            if unpacked["ok"] and not _missing(chk, ["detectron2"]):  # the check goes on; the table says why
                script.update(ok=True, detail=f"script failed ({script['detail']}); fallback used")
    if "detectron2" in _missing(chk, ["detectron2"]):
        missing.append("detectron2")
    detail = f"missing: {', '.join(missing)}" if missing else "every dependency imports"
    chk.add("environment", not missing, time.time() - start, detail)


def unpack_detectron2(chk: Check, wheels: List[Path]) -> None:
    """Fallback when the script cannot write the interpreter's site-packages: the same pure-Python
    package (its compiled ``_C`` left out) unpacked into ``--site``."""
    import zipfile

    start = time.time()
    if not wheels:
        chk.add("unpack detectron2", False, 0.0, "no sal_detectron2 wheel in WHEELS/d2")
        return
    with zipfile.ZipFile(wheels[-1]) as z:
        names = [n for n in z.namelist() if n.startswith("detectron2/") and "/_C" not in n]
        z.extractall(chk.args.site, names)
    chk.add("unpack detectron2", True, time.time() - start, f"{wheels[-1].name} (pure Python) into {chk.args.site}")


def describe_device(chk: Check) -> Dict[str, str]:
    code = ("import json, torch, torchvision; c = torch.cuda.is_available(); print(json.dumps({"
            "'device': torch.cuda.get_device_name(0) if c else 'CPU', 'torch': torch.__version__, "
            "'torchvision': torchvision.__version__, 'cuda': torch.version.cuda if c else None, "
            "'threads': torch.get_num_threads()}))")
    proc = subprocess.run([sys.executable, "-c", code], env=chk.env, capture_output=True, text=True)
    info = json.loads(proc.stdout) if proc.returncode == 0 else {"device": "unknown", "torch": "not importable"}
    if info["device"] == "CPU":
        info["device"] = f"CPU ({platform.processor() or platform.machine()}, {info['threads']} threads)"
    return info


# --- the rdet commands -------------------------------------------------------------------------------
def _json(path: Path) -> Dict:
    return json.loads(path.read_text())


def data_opts(chk: Check) -> List[str]:
    s = chk.size("image")
    return ["DATA.TRAIN_SIZE", s, "DATA.TEST_RESIZE", s, "DATA.CROP_SCALE_MIN", "0.5", "DATA.MAX_TRAIN",
            chk.size("max_train"), "DATA.MAX_TEST", chk.size("max_test"), "DATA.NUM_WORKERS", chk.size("workers"),
            "SOLVER.BATCH_SIZE", chk.size("batch"), "SOLVER.EPOCHS", "1", "SOLVER.LR_STEP_EPOCHS", "1",
            "RUNTIME.DEVICE", "cpu" if chk.cpu else "cuda", "RUNTIME.LOG_EVERY", "1000"]


def torchrun(module: str) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1", "-m", module]


def run_pipeline(chk: Check) -> None:
    w, py = chk.work, sys.executable
    first = w / "pretrain_a" / "model_final.pth"
    precisions = [("pretrain fp32" if chk.cpu else "pretrain fp16", "pretrain_a", ["RUNTIME.AMP", "off" if chk.cpu else "fp16"]),
                  ("pretrain bf16 channels_last", "pretrain_b", ["RUNTIME.AMP", "bf16", "RUNTIME.CHANNELS_LAST", "True"])]
    for name, sub, opts in precisions:
        rec = w / sub / "result.json"
        chk.step(f"{name} (torchrun)", torchrun("rdet.cli.pretrain") + [
            "--dataset", "digits", "--arch", "resnet18", "--eps", "0.5", "--norm", "l2", "--output-dir", w / sub,
            *data_opts(chk), "ADV.EVAL_STEPS", "2", *opts], 150,
            lambda rec=rec: f"clean {_json(rec)['value']:.1f}%, PGD {_json(rec)['robust_top1']:.1f}%, "
                            f"world size {_json(rec)['world_size']}")
    for mode in ("fixed", "full"):
        rec = w / f"classify_{mode}" / "result.json"
        chk.step(f"classify {mode} (torchrun)", torchrun("rdet.cli.classify") + [
            "--dataset", "digits", "--arch", "resnet18", "--weights", first, "--mode", mode,
            "--output-dir", w / f"classify_{mode}", *data_opts(chk), "TRANSFER.EVAL_EVERY", "1"], 120,
            lambda rec=rec: f"top-1 {_json(rec)['value']:.1f}% ({_json(rec)['protocol']})")
    rec = w / "evaluate" / "result.json"
    chk.step("evaluate", [py, "-m", "rdet", "evaluate", "--weights", first, "--dataset", "digits", "--norm", "l2",
                          "--steps", "3", "--output-dir", w / "evaluate", *data_opts(chk), "ATTACK.EPS", "[0.25]"], 90,
             lambda: "clean {:.1f}%, PGD-3 eps 0.25 {:.1f}%".format(_json(rec)["clean_top1"],
                                                                    _json(rec)["attacks"][0]["robust_top1"]))
    r50 = w / "r50_random.pth"
    save_r50 = "import sys, torch, torchvision; torch.save(torchvision.models.resnet50().state_dict(), sys.argv[1])"
    for name, src, dst in (("convert resnet18", first, w / "r18_d2.pkl"), ("convert resnet50 (random)", r50,
                                                                            w / "r50_d2.pkl")):
        if src == r50:
            subprocess.run([py, "-c", save_r50, r50], env=chk.env, check=False)
        chk.step(name, [py, "tools/convert_backbone.py", src, dst], 120,
                 lambda dst=dst: f"{dst.name}, {dst.stat().st_size / 2**20:.0f} MiB, verified against torchvision")
    train_detection(chk)


def train_detection(chk: Check) -> None:
    w, iters = chk.work, chk.size("det_iters")
    backbone = (["MODEL.WEIGHTS", w / "r18_d2.pkl"] if chk.cpu else
                ["MODEL.WEIGHTS", w / "r50_d2.pkl", "MODEL.RESNETS.DEPTH", "50", "MODEL.RESNETS.RES2_OUT_CHANNELS", "256"])
    rec = w / "det" / "result.json"
    chk.step(f"train_det Mask R-CNN {'R18' if chk.cpu else 'R50'}-FPN", [
        sys.executable, "tools/train_det.py", "--config-file", "configs/demo_mask_r18_fpn.yaml", *backbone,
        "SOLVER.MAX_ITER", iters, "SOLVER.STEPS", f"({max(1, iters - 5)},)", "SOLVER.WARMUP_ITERS", min(5, iters),
        "SOLVER.IMS_PER_BATCH", chk.size("det_batch"), "SOLVER.CHECKPOINT_PERIOD", "100000",
        "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0", "MODEL.DEVICE", "cpu" if chk.cpu else "cuda",
        "DATALOADER.NUM_WORKERS", chk.size("workers"), "OUTPUT_DIR", w / "det", *(CPU_DET if chk.cpu else [])], 240,
        lambda: "{} iterations, box AP {:.2f}, mask AP {:.2f}".format(
            _json(rec)["iterations"], _json(rec)["box_AP"], _json(rec)["mask_AP"]))


# --- throughput ---------------------------------------------------------------------------------------------
BENCH_CASES = (("adv", "fast"), ("adv", "fp32"), ("std", "fast"), ("d2", "fp32"))


def run_benchmarks(chk: Check) -> None:
    """The four throughput cases in one subprocess (one start-up and one CUDA context instead of
    four), one row each; a case that fails or never ran is a FAIL row with its reason."""
    b, s, arch = chk.size("bench_batch"), chk.size("bench_size"), ARCH_LABEL[chk.size("bench_arch")]
    labels = {("adv", "fast"): f"{arch} PGD-3 step, bf16 + channels_last (batch {b}, {s}px)",
              ("adv", "fp32"): f"{arch} PGD-3 step, fp32 NCHW (batch {b}, {s}px)",
              ("std", "fast"): f"{arch} standard step, bf16 + channels_last (batch {b}, {s}px)",
              ("d2", "fp32"): f"detectron2 R50-FPN train, batch {chk.size('d2_batch')}"}
    if chk.deadline - time.time() < 5:
        for case in BENCH_CASES:
            chk.add(labels[case], False, 0.0, "not run: time budget exhausted")
        return
    folder = chk.out / ".bench"
    folder.mkdir(exist_ok=True)
    code, took, error = chk.run([sys.executable, __file__, "--bench", str(folder)] + (["--cpu"] if chk.cpu else []),
                                "throughput", 150 * len(BENCH_CASES))
    for case in BENCH_CASES:
        path = folder / f"{case[0]}_{case[1]}.json"
        if not path.is_file():
            chk.add(labels[case], False, 0.0, error or f"exit code {code}: no result")
            continue
        r = _json(path)
        path.unlink()
        if "error" in r:
            chk.add(labels[case], False, r["seconds"], r["error"])
        else:
            chk.add(labels[case], True, r["seconds"], _bench_detail(r), **{k: r[k] for k in ("img_per_s", "s_per_iter")
                                                                             if k in r})
    if not any(folder.iterdir()):
        folder.rmdir()
    fast, slow = (next((r for r in chk.rows if r["step"].startswith(p) and r["ok"]), None)
                  for p in (f"{arch} PGD-3 step, bf16", f"{arch} PGD-3 step, fp32"))
    if fast and slow:
        chk.add("fast path / fp32 (PGD-3 step)", True, 0.0, f"{fast['img_per_s'] / slow['img_per_s']:.2f}x")


def _bench_detail(r: Dict) -> str:
    return f"{r['s_per_iter']:.3f} s/iter" if "img_per_s" not in r else \
        f"{r['img_per_s']:.1f} img/s ({r['s_per_iter']:.3f} s/step)"


def bench_worker(folder: str, cpu: bool) -> None:
    """Every throughput case in this process, in turn; each writes ``KIND_PRECISION.json`` with
    ``{'img_per_s'?, 's_per_iter', 'seconds'}`` or ``{'error', 'seconds'}`` (a failing case does
    not stop the others)."""
    import torch

    dev = torch.device("cpu" if cpu else "cuda")
    torch.backends.cudnn.benchmark = True
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    k = 1 if cpu else 0
    for kind, precision in BENCH_CASES:
        start, run = time.perf_counter(), None
        try:
            if kind == "d2":
                run, n = _detectron2_iteration(dev, SIZES["d2_batch"][k], SIZES["d2_hw"][k]), SIZES["d2_batch"][k]
            else:
                run, n = _classifier_epoch(dev, SIZES["bench_arch"][k], precision == "fast", kind == "adv",
                                           SIZES["bench_batch"][k], SIZES["bench_size"][k])
            run(SIZES["bench_warmup"][k])  # warm-up: cuDNN autotuning, allocator
            steps = SIZES["bench_steps"][k] if kind != "d2" else SIZES["d2_iters"][k]
            sync()
            t = time.perf_counter()
            run(steps)
            sync()
            per = (time.perf_counter() - t) / steps
            result = {"s_per_iter": per} if kind == "d2" else {"s_per_iter": per, "img_per_s": n / per}
        except Exception as e:  # noqa: BLE001 -- reported in the table; the next case still runs
            result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        del run
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        result["seconds"] = round(time.perf_counter() - start, 1)
        Path(folder, f"{kind}_{precision}.json").write_text(json.dumps(result))


def _classifier_epoch(dev, arch: str, fast: bool, adversarial: bool, batch: int, size: int):
    """``run(steps)``: rdet's EpochTrainer with rdet's training step (the paper's PGD-3: L2 eps 3,
    step 2 eps / 3, best iterate, eval-mode attack) over ``steps`` copies of one random batch."""
    import torch

    from rdet.backbones import create_classifier
    from rdet.config import get_pretrain_cfg
    from rdet.engine import EpochTrainer, Runtime, build_optimizer, build_scheduler
    from rdet.engine.steps import build_train_step

    rt = Runtime(dev, torch.bfloat16 if fast else None, channels_last=fast)
    cfg = get_pretrain_cfg()
    cfg.ADV.EPS = 3.0 if adversarial else 0.0
    model = rt.prepare(create_classifier(arch, 1000))
    opt = build_optimizer(model.parameters(), cfg)
    trainer = EpochTrainer(model, [], opt, build_scheduler(opt, cfg), rt, build_train_step(cfg.ADV, rt.autocast), 1,
                           scaler=rt.grad_scaler(), log_every=10 ** 9, desc="bench")
    x, y = torch.rand(batch, 3, size, size, device=dev), torch.randint(0, 1000, (batch,), device=dev)

    def run(steps: int):
        trainer.loader = [(x, y)] * steps
        trainer.train_mode(model)
        trainer.run_epoch()
    return run, batch


def _detectron2_iteration(dev, batch: int, hw):
    """``run(iters)``: forward, backward and SGD step of detectron2's Faster R-CNN R50-FPN (the
    paper's COCO config) on ``batch`` random images with 5 random boxes each."""
    import torch
    from detectron2.modeling import build_model
    from detectron2.solver import build_optimizer
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from rdet.config import CONFIG_DIR
    from rdet.detection.train import build_cfg

    cfg = build_cfg(str(CONFIG_DIR / "coco_r50_fpn_1x.yaml"), ["MODEL.DEVICE", dev.type, "SOLVER.BASE_LR", "0.001"])
    model = build_model(cfg)
    model.train()
    opt = build_optimizer(cfg, model)
    g = torch.Generator().manual_seed(0)
    h, w = hw
    batch_inputs = []
    for _ in range(batch):
        xy = torch.rand(5, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
        wh = 16 + torch.rand(5, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        inst = Instances((h, w), gt_boxes=Boxes(torch.cat([xy, xy + wh], 1)),
                         gt_classes=torch.randint(0, 80, (5,), generator=g))
        batch_inputs.append({"image": torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g),
                             "instances": inst, "height": h, "width": w})

    def run(iters: int):
        with EventStorage():  # detectron2's losses log into the current storage
            for _ in range(iters):
                loss = sum(model(batch_inputs).values())
                opt.zero_grad()
                loss.backward()
                opt.step()
    return run


# --- report ---------------------------------------------------------------------------------------------
def table(info: Dict[str, str], rows: List[Dict], wall: float) -> str:
    lines = [f"rdet gpu_check on {info['device']}: torch {info['torch']}, torchvision {info.get('torchvision')}, "
             f"CUDA {info.get('cuda')}; {wall:.0f} s", "",
             f"| {'step':<58} | {'result':<6} | {'time s':>6} | detail |", f"|{'-' * 60}|{'-' * 8}|{'-' * 8}|--------|"]
    for r in rows:
        lines.append(f"| {r['step']:<58} | {'ok' if r['ok'] else 'FAIL':<6} | {r['seconds']:>6.1f} | {r['detail']} |")
    failed = [r["step"] for r in rows if not r["ok"]]
    lines += ["", f"{len(rows) - len(failed)} of {len(rows)} passed" + (f"; FAILED: {', '.join(failed)}" if failed else "")]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="the same sequence, tiny, on CPU")
    p.add_argument("--wheels", help="folder of wheels for missing dependencies (and d2/ for detectron2)")
    p.add_argument("--site", default="/tmp/site", help="where --wheels installs (put on PYTHONPATH)")
    p.add_argument("--out", default="gpu_check_out", help="table.txt, results.json, steps.log")
    p.add_argument("--work", help="checkpoints and run folders (default: a new temporary folder)")
    p.add_argument("--data-root", help="RDET_DATASETS for the runs (default WORK/datasets; the detection "
                                       "set is composed there from Fashion-MNIST unless it is there already)")
    p.add_argument("--budget-s", type=float, help="total time budget (default 480 on GPU, 600 with --cpu)")
    p.add_argument("--bench", metavar="FOLDER", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.bench:
        bench_worker(args.bench, cpu=args.cpu)
        return 0
    args.budget_s = args.budget_s or (600.0 if args.cpu else 480.0)
    start = time.time()
    chk = Check(args)
    info = describe_device(chk)
    if not args.cpu and info["device"].startswith(("CPU", "unknown")):
        print(f"no CUDA GPU visible (device: {info['device']}); use --cpu for the CPU rehearsal", file=sys.stderr)
        return 2
    print(f"rdet gpu_check: {info['device']}, torch {info['torch']}; work folder {chk.work}", flush=True)
    ensure_environment(chk)
    for stage in (run_pipeline, run_benchmarks):
        try:
            stage(chk)
        except Exception as e:  # a bug in this script must still leave the table
            chk.add(stage.__name__, False, 0.0, f"{type(e).__name__}: {e}")
    text = table(info, chk.rows, time.time() - start)
    print("\n" + text)
    (chk.out / "table.txt").write_text(text + "\n")
    (chk.out / "results.json").write_text(json.dumps({**info, "rows": chk.rows, "cpu": args.cpu,
                                                      "wall_s": time.time() - start}, indent=2) + "\n")
    chk.log.close()
    return 0 if all(r["ok"] for r in chk.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
