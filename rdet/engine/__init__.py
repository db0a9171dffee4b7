"""The training engine shared by pretraining (``rdet.pretrain``) and transfer (``rdet.classify``)."""
from rdet.engine.batchnorm import BN_POLICIES, apply_bn_mode, prepare_bn
from rdet.engine.build import ShardSampler, build_loader, build_optimizer, build_scheduler
from rdet.engine.loop import evaluate, train_one_epoch
from rdet.engine.runtime import Runtime, setup_runtime
from rdet.engine.state import FINAL, LAST, load_state, rdet_checkpoint, resume_point, save_state

__all__ = ["BN_POLICIES", "apply_bn_mode", "prepare_bn", "Runtime", "setup_runtime", "train_one_epoch", "evaluate", "build_loader", "build_optimizer",
           "build_scheduler", "ShardSampler", "save_state", "load_state", "resume_point", "rdet_checkpoint",
           "LAST", "FINAL"]
