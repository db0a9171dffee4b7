"""Adversarial attacks on [0, 1] RGB images (PGD under L2 and Linf)."""
from rdet.attacks.pgd import NORMS, make_perturb, pgd, project, random_start

__all__ = ["pgd", "make_perturb", "project", "random_start", "NORMS"]
