"""top-1 and mean-per-class accuracy against hand computations."""
import pytest
import torch

from rdet.core.metrics import confusion_matrix, scores_from_confusion


def test_mean_per_class_by_hand():
    # class 0: 4 images, 3 right; class 1: 1 image, 0 right; class 2: 2 images, 2 right
    target = torch.tensor([0, 0, 0, 0, 1, 2, 2])
    pred = torch.tensor([0, 0, 0, 2, 0, 2, 2])
    s = scores_from_confusion(confusion_matrix(pred, target, 4))  # class 3 absent: not averaged
    assert s["top1"] == pytest.approx(100 * 5 / 7)
    assert s["mean_per_class"] == pytest.approx(100 * (3 / 4 + 0 / 1 + 2 / 2) / 3)


def test_confusion_adds_over_shards():
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randint(0, 5, (100,), generator=g), torch.randint(0, 5, (100,), generator=g)
    whole = confusion_matrix(pred, target, 5)
    parts = confusion_matrix(pred[:37], target[:37], 5) + confusion_matrix(pred[37:], target[37:], 5)
    assert torch.equal(whole, parts) and whole.sum() == 100
