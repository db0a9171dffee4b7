"""Default configs, the one home of the paper's hyperparameters (appendix A).

Classification transfer and pretraining share one schema (detectron2-style yacs ``CfgNode``,
``_BASE_`` YAML files, ``KEY VALUE`` overrides); each gets its paper defaults from
:func:`get_transfer_cfg` / :func:`get_pretrain_cfg`. Detection uses detectron2's own config.
"""
from __future__ import annotations

from fvcore.common.config import CfgNode as CN


def _base() -> CN:
    _C = CN()
    _C.OUTPUT_DIR = "output"
    _C.SEED = 0

    _C.MODEL = CN()
    _C.MODEL.ARCH = "resnet18"  # a registry name (rdet.backbones.list_backbones())
    _C.MODEL.WEIGHTS = ""  # "" = random init; a catalog name or a checkpoint file
    _C.MODEL.ALLOW_PICKLE = False  # read checkpoints with full unpickling (trusted files only)
    _C.MODEL.BN = "train"  # train | fixed_stats | sync (rdet/engine/batchnorm.py)
    # The input normalisation MODEL.WEIGHTS was trained with, for a file that holds no normaliser
    # and is not in the catalog by name: "" (the file's, the catalog's, else the arch's default;
    # refused where the arch's releases differ) | imagenet | raw ([0, 1] input: Singh et al.'s
    # ConvStem models) | inception (0.5 / 0.5). A file's own normaliser that disagrees is refused.
    _C.MODEL.INPUT_NORM = ""
    # Which weights of a file that holds both plain and EMA copies (Singh et al.'s full_model_*.pth,
    # timm's train.py checkpoints): "" (refused when both are there) | plain | ema
    _C.MODEL.WEIGHTS_VARIANT = ""

    _C.DATA = CN()
    _C.DATA.DATASET = "fashion_mnist"
    _C.DATA.ROOT = "datasets"  # overridden by $RDET_DATASETS when set
    _C.DATA.CLASSES = []  # keep only these labels (relabelled 0..K-1); [] = all
    _C.DATA.TRAIN_SIZE = 224  # RandomResizedCrop size
    _C.DATA.AUGMENT = True  # False: train on the test transform (deterministic inputs)
    _C.DATA.CROP_SCALE_MIN = 0.08  # RandomResizedCrop's smallest area fraction (torchvision default)
    _C.DATA.AUGMENT_POLICY = "paper_transfer"  # paper_transfer (A.2) | robustness_imagenet | auto (data/transforms.py)
    _C.DATA.ALLOW_MISSING_TEST_CLASSES = False  # True: a training class may have no test images (else refused)
    _C.DATA.VERIFY_IMAGES = "quick"  # quick | decode | off: check image files before training (rdet/data/build.py)
    _C.DATA.SKIP_BAD_FILES = False  # True: skip and count unreadable image files instead of refusing the run
    # Test-time preprocessing, each "auto"/0 = what the weights were evaluated with
    # (rdet/backbones/preprocessing.py: the catalog release's RobustBench preprocessing, else the
    # arch's: torchvision's CNNs Resize(256, bilinear) + CenterCrop(224), timm's bicubic). A value
    # set here overrides it; the record says so and the report labels the row.
    _C.DATA.TEST_RESIZE = 0  # Resize's short side (0: TRAIN_SIZE / the model's crop fraction)
    _C.DATA.TEST_INTERPOLATION = "auto"  # auto | bilinear | bicubic
    _C.DATA.TEST_CROP = "auto"  # auto | center (Resize, then CenterCrop(TRAIN_SIZE)) | squash (Resize to TRAIN_SIZE x TRAIN_SIZE: RobustBench's Res224)
    _C.DATA.DOWNSCALE = 0  # >0: Resize(DOWNSCALE) first (appendix A.3 uses 32)
    _C.DATA.NUM_WORKERS = 2
    _C.DATA.MAX_TRAIN = 0  # >0: a seeded subset of this many training images (quick runs)
    _C.DATA.MAX_TEST = 0
    _C.DATA.VAL_SIZE = 0.0  # >0: hold out this share (<1) or count (>=1) of the training set and evaluate on it instead of the test set (rdet/data/validation.py)
    _C.DATA.VAL_SEED = 0  # seed of that stratified validation split

    _C.SOLVER = CN()
    _C.SOLVER.BATCH_SIZE = 64  # global batch (split across DDP processes)
    _C.SOLVER.BASE_LR = 0.01
    _C.SOLVER.MOMENTUM = 0.9
    _C.SOLVER.WEIGHT_DECAY = 5e-4
    _C.SOLVER.EPOCHS = 150
    _C.SOLVER.LR_STEP_EPOCHS = 50  # lr x GAMMA every this many epochs
    _C.SOLVER.GAMMA = 0.1
    # The optimizer recipe (rdet/engine/optim.py); the defaults are the paper's SGD + step schedule.
    # ConvNeXt / Swin / ViT train with rdet/configs/recipe_adamw_cosine(_lld).yaml.
    _C.SOLVER.RECIPE = "paper_sgd"  # the recipe's name, recorded with the settings that ran
    _C.SOLVER.OPTIMIZER = "sgd"  # sgd (SOLVER.MOMENTUM) | adamw (SOLVER.BETAS)
    _C.SOLVER.BETAS = [0.9, 0.999]  # AdamW's (beta1, beta2)
    _C.SOLVER.NO_WD_1D = False  # True: no weight decay on biases, norm weights, position embeddings, tokens
    _C.SOLVER.LR_SCHEDULE = "step"  # step (GAMMA every LR_STEP_EPOCHS) | cosine (to MIN_LR_FACTOR x BASE_LR)
    _C.SOLVER.MIN_LR_FACTOR = 0.0  # cosine: the last epoch's lr as a fraction of BASE_LR
    _C.SOLVER.WARMUP_EPOCHS = 0  # linear warm-up epochs before the schedule
    _C.SOLVER.WARMUP_FACTOR = 0.001  # warm-up starts at this fraction of BASE_LR
    _C.SOLVER.LAYER_DECAY = 1.0  # < 1: layer-wise lr decay (timm models; lr x LAYER_DECAY ** depth from the top)

    _C.RUNTIME = CN()
    _C.RUNTIME.DEVICE = "auto"  # auto | cpu | cuda
    _C.RUNTIME.AMP = "off"  # off | bf16 | fp16 (fp16 on CUDA only)
    # bf16 on a CPU without native bf16 (no AVX512-BF16 / AMX) is refused (~20x slower than fp32;
    # rdet/config/hardware.py); True runs it anyway, with a warning
    _C.RUNTIME.ALLOW_SLOW_AMP = False
    _C.RUNTIME.CHANNELS_LAST = False
    _C.RUNTIME.LOG_EVERY = 20  # iterations between TensorBoard scalars and progress updates
    # What --resume does when the checkpoint was made by a run with other settings (rdet/engine/
    # signature.py): "error" refuses naming the keys; "restart" discards it and starts afresh.
    _C.RUNTIME.RESUME_MISMATCH = "error"
    # Mid-epoch checkpoints (rdet/engine/trainer.py): also save last_checkpoint.pth inside an epoch
    # every this many minutes of wall time, so a kill loses at most that much work; --resume then
    # continues the epoch with the same batches. 0 = only at the end of each epoch.
    _C.RUNTIME.CHECKPOINT_MINUTES = 0.0
    # The same every this many iterations (0 = off): deterministic, for tests and debugging.
    _C.RUNTIME.CHECKPOINT_EVERY_ITERS = 0
    return _C


def get_transfer_cfg() -> CN:
    """Appendix A.2: SGD, batch 64, momentum 0.9, wd 5e-4, 150 epochs, lr in {0.01, 0.001}
    dropping 10x every 50 epochs, three seeds."""
    _C = _base()
    _C.TRANSFER = CN()
    _C.TRANSFER.MODE = "fixed"  # fixed: frozen backbone (BN in eval) + new head; full: all trained
    _C.TRANSFER.LR_GRID = [0.01, 0.001]
    _C.TRANSFER.SEEDS = [0, 1, 2]
    # Fixed-feature fast path: extract frozen features once (CACHE_VIEWS augmented views per
    # training image) and train the head on them.
    # Off by default: the paper trains the head on a fresh augmented view of every image each
    # epoch. On: extract CACHE_VIEWS augmented views once and cycle through them (fast, but a
    # different protocol, recorded as such; see README "Fixed-feature protocol").
    _C.TRANSFER.CACHE_FEATURES = False
    _C.TRANSFER.CACHE_VIEWS = 1
    # Test-set evaluation after epochs 1, 1 + EVAL_EVERY, 1 + 2 * EVAL_EVERY, ... and the last (the
    # robustness library's schedule, which the authors' code runs with 5: 1, 6, ..., 146, 150);
    # records keep the final value and the best periodic one. 0: final epoch only.
    _C.TRANSFER.EVAL_EVERY = 5
    return _C


def get_pretrain_cfg() -> CN:
    """Appendix A.1: SGD, batch 512, momentum 0.9, wd 1e-4, 90 epochs, lr 0.1 dropping 10x every
    30 epochs; adversarial training with 3 PGD steps of size 2*eps/3."""
    _C = _base()
    _C.SOLVER.BATCH_SIZE = 512
    _C.SOLVER.BASE_LR = 0.1
    _C.SOLVER.WEIGHT_DECAY = 1e-4
    _C.SOLVER.EPOCHS = 90
    _C.SOLVER.LR_STEP_EPOCHS = 30
    _C.DATA.AUGMENT_POLICY = "auto"  # the robustness library's ImageNet augmentation on ImageNet, A.2 elsewhere
    _C.ADV = CN()
    _C.ADV.NORM = "l2"  # l2 | linf
    _C.ADV.EPS = 0.0  # radius for images in [0, 1]; 0 = standard training
    _C.ADV.STEPS = 3
    _C.ADV.STEP_SIZE_FACTOR = 2.0 / 3.0  # step size = factor * eps
    _C.ADV.RANDOM_START = False
    # pgd (the paper) | fgsm_rs (Wong et al. 2020: one step of FGSM_STEP_FACTOR * eps from a random
    # start) | free (Shafahi et al. 2019: each batch replayed FREE_REPLAYS times, epochs / replays).
    _C.ADV.METHOD = "pgd"
    _C.ADV.FGSM_STEP_FACTOR = 1.25
    _C.ADV.FREE_REPLAYS = 4
    # The robustness library attacks with the model in eval mode (BatchNorm uses running stats and
    # is not updated) and keeps each image's highest-loss iterate: eval | train.
    _C.ADV.ATTACK_MODE = "eval"
    _C.ADV.USE_BEST = True
    # Catastrophic-overfitting guard: PGD accuracy on a fixed batch of GUARD_SAMPLES training
    # images after each epoch; a drop of more than GUARD_MARGIN points below its best stops the run
    # and keeps the best epoch's weights. auto = on for fgsm_rs and free.
    _C.ADV.GUARD = "auto"  # auto | on | off
    _C.ADV.GUARD_SAMPLES = 256
    _C.ADV.GUARD_STEPS = 10
    _C.ADV.GUARD_MARGIN = 20.0
    # Robust accuracy reported at the end of pretraining (stronger than the training attack).
    _C.ADV.EVAL_STEPS = 10
    return _C


def get_evaluate_cfg() -> CN:
    """Robust evaluation: PGD with random start, step size 2.5 * eps / steps, best of restarts."""
    _C = _base()
    _C.SOLVER.BATCH_SIZE = 256
    _C.DATA.DATASET = "imagenet"
    _C.ATTACK = CN()
    _C.ATTACK.NORM = "l2"
    _C.ATTACK.EPS = [0.25, 0.5, 1.0]
    _C.ATTACK.STEPS = 20
    _C.ATTACK.RESTARTS = 1
    _C.ATTACK.STEP_SIZE_FACTOR = 0.0  # 0: 2.5 / STEPS
    # attacks run at every ATTACK.EPS: pgd (rdet.attacks.pgd) and/or autoattack (pyautoattack, fp32)
    _C.ATTACK.TYPES = ["pgd"]
    _C.ATTACK.AA_VERSION = "standard"  # standard (RobustBench) | plus | rand (randomised defences)
    # >0: AutoAttack's APGD/FAB iterations (default 100) / Square queries (default 5000); quick runs
    # and tests only: the record then says standard_budget false
    _C.ATTACK.AA_N_ITER = 0
    _C.ATTACK.AA_N_QUERIES = 0
    _C.OUTPUT_DIR = "output/evaluate"  # where result.json and per_image.csv go
    _C.EVAL = CN()
    _C.EVAL.FIT_HEAD = False  # head not for this dataset: refuse (False) or fit a linear head on its training split (True)
    _C.EVAL.FIT_HEAD_VIEWS = 1  # augmented views per training image cached for that head (SOLVER.* trains it)
    _C.EVAL.SUBSET = ""  # "" = the whole test split | robustbench: RobustBench's 5000 ImageNet val images, its order
    _C.EVAL.SUBSET_LIST = ""  # "" = the list rdet ships (rdet/data/robustbench_imagenet_test_ids.txt); else a file of wnid/name lines
    return _C


def get_select_cfg() -> CN:
    """The transfer config plus ``SELECT`` (rdet.select). ``SELECT.*`` keys are set with ``KEY VALUE``
    overrides only; a config *file* given to rdet.select stays an ordinary transfer config, so the
    same file drives the full-network fine-tuning of the top models (ordinary transfer cells)."""
    _C = get_transfer_cfg()
    # Held-out share of the TRAINING data that ranks models and heads (< 1: fraction, >= 1: count,
    # seed DATA.VAL_SEED); the test set is evaluated and reported, never used to choose.
    _C.DATA.VAL_SIZE = 0.2
    _C.SELECT = CN()
    # Augmented views of each training image extracted once and cycled through by the SGD head
    # (the K-view feature cache of rdet.transfer.feature_cache); plus one centre-crop pass.
    _C.SELECT.VIEWS = 5
    _C.SELECT.EXTRACT_BATCH = 256  # images per backbone forward pass while extracting
    # Features are stored in this dtype on disk (float16 halves the cache; heads train in float32).
    _C.SELECT.CACHE_DTYPE = "float16"
    # L-BFGS multinomial logistic regression on centre-crop features (Kornblith, Shlens and Le,
    # CVPR 2019), one fit per L2 penalty (the coefficient of 0.5 * ||W||^2 added to the mean
    # cross-entropy), strongest first with warm starts; [] turns it off.
    _C.SELECT.LOGREG_L2 = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]
    _C.SELECT.LOGREG_MAX_ITER = 100
    # Transferability estimators scored from the cached features beside the validation ranking
    # (rdet.select.estimators; "linear" is that ranking itself). Not part of the cells' settings:
    # changing them re-scores a finished selection from its cache.
    _C.SELECT.ESTIMATORS = ["linear"]
    _C.SELECT.KNN_K = 10  # neighbours of the leave-one-out k-NN probe
    return _C
