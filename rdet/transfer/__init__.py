"""Transfer learning from pretrained backbones: fixed-feature and full-network."""
from rdet.transfer.feature_cache import evaluate_features, extract_features, extract_views, train_head_on_features
from rdet.transfer.model import MODES, build_transfer_model, set_train_mode, trainable_parameters

__all__ = ["MODES", "build_transfer_model", "set_train_mode", "trainable_parameters", "extract_features", "extract_views",
           "train_head_on_features", "evaluate_features"]
