"""A registry network with its input normalisation inside, split into body and head.

Every rdet entry point feeds images as RGB floats in [0, 1]: normalisation lives in the model (as
in the robustness library), so attacks work in pixel space and the eps-ball means what the paper
means. The torchvision classifier layer is split off as ``head`` so that fixed-feature transfer
can freeze ``body`` and cache its outputs, and a new task only swaps ``head``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Dict, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from rdet.backbones.registry import BackboneSpec, get_spec
from rdet.backbones.skip_init import Skipped, check_loaded, skip_parameter_init

if TYPE_CHECKING:
    from rdet.backbones.checkpoint import LoadedCheckpoint


class InputNormalize(nn.Module):
    """``(x - mean) / std`` per RGB channel, on ``(N, 3, H, W)`` input in [0, 1]."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def set_stats(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Use a checkpoint's statistics (e.g. (0, 0, 0) / (1, 1, 1): a release trained on raw [0, 1] input)."""
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            from rdet.core.errors import CheckpointError

            raise CheckpointError(f"input normalisation mean {list(mean)} / std {list(std)}: need 3 values each, "
                                  f"std > 0")
        with torch.no_grad():
            self.mean.copy_(torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.std.copy_(torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def stats(self):
        """``(mean, std)`` as lists of 3 floats."""
        return [float(v) for v in self.mean.flatten()], [float(v) for v in self.std.flatten()]


def _split_path(path: str):
    parent, _, leaf = path.rpartition(".")
    return parent, leaf


class Classifier(nn.Module):
    """``head(body(normalize(x)))`` for ``x``: RGB, [0, 1], ``(N, 3, H, W)``.

    ``body`` is the torchvision network with its final linear layer replaced by ``nn.Identity``
    (so ``body`` returns ``(N, spec.feature_dim)`` features); ``head`` is that linear layer.
    """

    def __init__(self, spec: BackboneSpec, num_classes: int = 1000):
        super().__init__()
        self.spec = spec
        self.normalize = InputNormalize(spec.mean, spec.std)
        net = spec.builder(num_classes)
        parent, leaf = _split_path(spec.classifier)
        owner = net.get_submodule(parent) if parent else net
        head = getattr(owner, leaf)
        if not isinstance(head, nn.Linear) or head.in_features != spec.feature_dim:
            raise AssertionError(f"{spec.name}: {spec.classifier} is not a Linear({spec.feature_dim}, ...)")
        setattr(owner, leaf, nn.Identity())
        self.body = net
        self.head = head

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def reset_head(self, num_classes: int) -> None:
        """Replace the head by a freshly initialised ``Linear(feature_dim, num_classes)``."""
        self.head = nn.Linear(self.spec.feature_dim, num_classes).to(self.head.weight.device)

    # -- torchvision state_dict views -----------------------------------------------------
    def torchvision_state_dict(self) -> Dict[str, torch.Tensor]:
        """The weights under torchvision's own key names (what checkpoints store)."""
        sd = {k: v for k, v in self.body.state_dict().items()}
        for k, v in self.head.state_dict().items():
            sd[f"{self.spec.classifier}.{k}"] = v
        return sd

    def load_torchvision_state_dict(self, sd: Dict[str, torch.Tensor], with_head: bool = True) -> None:
        """Strictly load torchvision-named weights. ``with_head=False``: ``sd`` has no head keys
        (or they are ignored) and the current head is kept (transfer to a new label set)."""
        prefix = self.spec.classifier + "."
        body_sd = {k: v for k, v in sd.items() if not k.startswith(prefix)}
        self.body.load_state_dict(body_sd, strict=True)
        if with_head:
            self.head.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)},
                                      strict=True)


def create_classifier(arch: str, num_classes: int = 1000, weights: Optional[str] = None,
                      allow_pickle: bool = False, input_norm: str = "", variant: str = "") -> Classifier:
    """The single entry point (like timm's ``create_model``).

    ``weights``: ``None`` (random init), a catalog name (``resnet50_l2_eps3``) or a file path
    (robustness-library, torchvision or rdet checkpoint). If ``num_classes`` differs from the
    checkpoint's head, the body is loaded and a fresh head of the requested size is kept.
    """
    if not weights:
        return Classifier(get_spec(arch), num_classes)
    return load_classifier(arch, num_classes, weights, allow_pickle, input_norm, variant)[0]


def load_classifier(arch: str, num_classes: int, weights: str, allow_pickle: bool = False, input_norm: str = "",
                    variant: str = "") -> Tuple[Classifier, "LoadedCheckpoint"]:
    """:func:`create_classifier` with ``weights``, and what was loaded (its metadata says the
    weights' norm, eps, input normalisation and whether the head came from the file). The
    network is built without drawing the parameters the file overwrites (``skip_init``)."""
    from rdet.backbones.checkpoint import load_weights

    with skip_parameter_init() as skipped:
        model = Classifier(get_spec(arch), num_classes)
    loaded = load_weights(model, weights, allow_pickle=allow_pickle, input_norm=input_norm, variant=variant)
    _fresh_head_unless(model, loaded.meta["head_loaded"], skipped, str(weights))
    return model, loaded


def classifier_from(loaded: "LoadedCheckpoint", num_classes: int, with_head: bool, what: str) -> Classifier:
    """A classifier holding checkpoint ``loaded`` (read before: its arch picks the network) with
    its head when ``with_head``, else a fresh one of ``num_classes``."""
    from rdet.backbones.checkpoint import apply_checkpoint

    with skip_parameter_init() as skipped:
        model = Classifier(get_spec(loaded.arch), num_classes)
    apply_checkpoint(model, loaded, with_head)
    _fresh_head_unless(model, with_head, skipped, what)
    return model


def _fresh_head_unless(model: Classifier, head_loaded: bool, skipped: Skipped, what: str) -> None:
    if not head_loaded:
        model.reset_head(model.num_classes)
    check_loaded(model, skipped, what)
