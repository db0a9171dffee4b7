"""PGD: perturbations stay in the eps-ball and in [0, 1]; on a trained model the attack raises
the loss above clean inputs and above random noise of the same norm."""
import pytest
import torch
import torch.nn.functional as F

from rdet.attacks import pgd, random_start
from rdet.backbones import create_classifier


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return create_classifier("resnet18", 10).eval()


def _dist(a, b, norm):
    d = (a - b).flatten(1)
    return d.norm(dim=1) if norm == "l2" else d.abs().max(dim=1).values


@pytest.mark.parametrize("norm,eps", [("l2", 0.5), ("linf", 8 / 255)])
@pytest.mark.parametrize("rand_init,restarts,keep_best", [(False, 1, False), (True, 1, True), (True, 2, False)])
def test_stays_in_ball_and_box(random_model, norm, eps, rand_init, restarts, keep_best):
    x = torch.rand(6, 3, 16, 16)
    x[0] = 0.0  # corners of the box: projection onto [0,1] must hold there too
    x[1] = 1.0
    y = torch.randint(0, 10, (6,))
    adv = pgd(random_model, x, y, eps, norm, steps=4, rand_init=rand_init, restarts=restarts, keep_best=keep_best)
    assert (_dist(adv, x, norm) <= eps * (1 + 1e-5)).all()
    assert adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)


@pytest.mark.parametrize("norm,eps", [("l2", 0.5), ("linf", 4 / 255)])
def test_random_start_in_ball(norm, eps):
    x = torch.rand(50, 3, 8, 8) * 0.5 + 0.25
    assert (_dist(random_start(x, eps, norm), x, norm) <= eps * (1 + 1e-5)).all()


def test_parameters_get_no_gradient(random_model):
    x, y = torch.rand(2, 3, 16, 16), torch.tensor([1, 2])
    pgd(random_model, x, y, 0.5, "l2", steps=2)
    assert all(p.grad is None for p in random_model.parameters())


@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("linf", 0.1)])
def test_attack_beats_clean_and_random_noise(trained_digits, norm, eps):
    model, x, y = trained_digits
    model.eval()
    with torch.no_grad():
        clean = F.cross_entropy(model(x), y).item()
        noise = random_start(x, eps, norm)
        noisy = F.cross_entropy(model(noise), y).item()
        adv = F.cross_entropy(model(pgd(model, x, y, eps, norm, steps=10)), y).item()
    assert adv > 2 * max(clean, noisy), (clean, noisy, adv)


def test_targeted_moves_towards_target(trained_digits):
    model, x, y = trained_digits
    target = (y + 1) % 10
    with torch.no_grad():
        before = (model(x).argmax(1) == target).float().mean().item()
    adv = pgd(model.eval(), x, target, 2.0, "l2", steps=20, targeted=True)
    with torch.no_grad():
        after = (model(adv).argmax(1) == target).float().mean().item()
    assert after > before + 0.3
