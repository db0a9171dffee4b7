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


@pytest.mark.parametrize("norm,eps", [("l2", 0.5), ("linf", 8 / 255)])
def test_fgsm_rs_stays_in_ball_and_box(random_model, norm, eps):
    from rdet.attacks import fgsm_rs

    x = torch.rand(6, 3, 16, 16)
    x[0], x[1] = 0.0, 1.0
    y = torch.randint(0, 10, (6,))
    adv = fgsm_rs(random_model, x, y, eps, norm, step_factor=1.25)
    assert (_dist(adv, x, norm) <= eps * (1 + 1e-5)).all()
    assert adv.min() >= 0 and adv.max() <= 1
    # the step of 1.25 eps from inside the ball ends on its boundary for most samples
    assert (_dist(adv, x, norm) > 0.9 * eps).float().mean() > 0.5


@pytest.mark.parametrize("norm,eps", [("l2", 0.5), ("linf", 8 / 255)])
def test_free_update_stays_in_ball_and_box(norm, eps):
    from rdet.attacks import free_update

    x = torch.rand(8, 3, 8, 8)
    x[0], x[1] = 0.0, 1.0
    delta = torch.zeros_like(x)
    for _ in range(5):  # carried over replays, as free training does
        delta = free_update(delta, torch.randn_like(x), x, eps, norm)
        assert (_dist(x + delta, x, norm) <= eps * (1 + 1e-5)).all()
        assert (x + delta).min() >= 0 and (x + delta).max() <= 1
    assert delta.abs().sum() > 0


def _library_training_attack(model, x, y, eps, steps=3):
    """The robustness library's training attack, written out from its algorithm (attacker.py,
    L2 step): the model in eval mode, no random start, ``steps`` normalised-gradient steps of
    2 eps / 3 with projection, and per sample the highest-loss iterate, the start and the final
    point included (``use_best``)."""
    model.eval()
    step = 2 * eps / steps
    xa, best_x, best_loss = x.clone(), None, None
    for _ in range(steps + 1):
        xa = xa.detach().requires_grad_(True)
        losses = F.cross_entropy(model(xa), y, reduction="none")
        (g,) = torch.autograd.grad(losses.sum(), xa)
        with torch.no_grad():
            if best_x is None:
                best_x, best_loss = xa.clone(), losses.clone()
            else:
                better = losses > best_loss
                best_x[better], best_loss[better] = xa[better], losses[better]
            g = g / (g.flatten(1).norm(dim=1).view(-1, 1, 1, 1) + 1e-10)
            delta = (xa + step * g - x).renorm(p=2, dim=0, maxnorm=eps)
            xa = (x + delta).clamp(0, 1)
    return best_x


def test_default_training_attack_is_the_robustness_librarys():
    """rdet's default training step attacks exactly as the library trains: eval mode (BatchNorm
    on running statistics, nothing updated), 3 steps of 2 eps / 3, no random start, best iterate."""
    from rdet.config import get_pretrain_cfg
    from rdet.engine.steps import AttackStep, build_train_step

    torch.manual_seed(0)
    model = create_classifier("resnet18", 10)
    model.train()
    with torch.no_grad():  # non-trivial running statistics, so eval and train mode differ
        for _ in range(3):
            model(torch.rand(16, 3, 16, 16))
    x, y = torch.rand(8, 3, 16, 16), torch.randint(0, 10, (8,))
    cfg = get_pretrain_cfg()
    cfg.ADV.EPS = 0.5
    step = build_train_step(cfg.ADV, None)
    assert isinstance(step, AttackStep) and step.attack_mode == "eval"
    bn_before = model.body.bn1.running_mean.clone()
    from rdet.engine.steps import eval_mode

    with eval_mode(model):
        ours = step.attack(model, x, y)
    assert model.training and model.body.layer1[0].bn1.training  # modes restored
    assert torch.equal(model.body.bn1.running_mean, bn_before)  # the attack updated nothing
    import copy

    ref = _library_training_attack(copy.deepcopy(model), x, y, 0.5)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    train_mode_adv = step.attack(copy.deepcopy(model).train(), x, y)  # what rdet used to do
    assert (train_mode_adv - ref).abs().max() > 1e-3
