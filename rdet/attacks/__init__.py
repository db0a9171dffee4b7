"""Adversarial attacks on [0, 1] RGB images: PGD under L2 and Linf, and the cheap training attacks
(FGSM with random start, the "free" perturbation update)."""
from rdet.attacks.fast import fgsm_rs, free_update
from rdet.attacks.pgd import NORMS, make_perturb, pgd, project, random_start

__all__ = ["pgd", "make_perturb", "project", "random_start", "fgsm_rs", "free_update", "NORMS"]
