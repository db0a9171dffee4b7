"""The selection config: the transfer config (``rdet.config.get_transfer_cfg``) plus ``SELECT``.

``SELECT.*`` keys are set with ``KEY VALUE`` overrides only; a config *file* given to
``rdet.select`` stays an ordinary transfer config, so the same file drives the full-network
fine-tuning of the top models (ordinary ``rdet.classify`` cells).
"""
from __future__ import annotations

from fvcore.common.config import CfgNode as CN

from rdet.config import get_transfer_cfg


def get_select_cfg() -> CN:
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
    return _C
