"""The training engine shared by pretraining (``rdet.pretrain``) and transfer (``rdet.classify``):
one epoch loop with hooks, training steps (standard, adversarial, free), evaluation, the runtime
(device, precision, DDP) and resumable state."""
from rdet.engine.batchnorm import BN_POLICIES, apply_bn_mode, prepare_bn
from rdet.engine.build import ShardSampler, build_loader, build_optimizer, build_scheduler
from rdet.engine.evaluation import evaluate
from rdet.engine.runtime import Runtime, setup_runtime
from rdet.engine.state import FINAL, LAST, check_resume, restore, save_state
from rdet.engine.trainer import EpochTrainer, HookBase

__all__ = ["BN_POLICIES", "apply_bn_mode", "prepare_bn", "Runtime", "setup_runtime", "evaluate", "build_loader",
           "build_optimizer", "build_scheduler", "ShardSampler", "EpochTrainer", "HookBase", "save_state",
           "check_resume", "restore", "LAST", "FINAL"]
