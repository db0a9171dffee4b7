"""Transferability estimators: how well a backbone will transfer to a labelled target set, scored
from one pass of its features over that set, with nothing trained on the backbone.

Every estimator is registered in :data:`ESTIMATOR_REGISTRY` as
``score(features (N, D), labels (N,), **kwargs) -> float`` (higher: the backbone should transfer
better). Features are penultimate-layer activations, any dtype (numpy or torch; computed in
float64 here); labels are integer class ids (any ids: the classes present are used). LEEP and
NCE also read ``source_probs`` (N, C_s): the source model's own class probabilities (its
pretraining head applied to the same features; see :mod:`rdet.select.scoring`).

``linear`` (the validation-split heads of :mod:`rdet.select.heads`) is not a function of
features and labels alone: it is named in :data:`ESTIMATOR_NAMES` so that one list of names
serves the command line, and computed by the selection itself.

Inputs a user can get wrong (a label count that disagrees with the features, NaN or infinite
features) are refused in one line (:class:`rdet.core.errors.RdetError`) before any work.
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
from fvcore.common.registry import Registry

from rdet.core.errors import RdetError

ESTIMATOR_REGISTRY = Registry("ESTIMATOR")
ESTIMATOR_REGISTRY.__doc__ = """
Transferability estimators: ``fn(features (N, D), labels (N,), **kwargs) -> float``, higher is
better. ``fn.needs_source`` is True for those that also take ``source_probs`` (N, C_s).
"""


def _as_array(x, dtype=np.float64) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def check_inputs(features, labels) -> Tuple[np.ndarray, np.ndarray]:
    """``(features float64 (N, D), labels as 0..C-1 (N,))``; one-line :class:`RdetError` for a
    label count that disagrees with the features or for NaN / infinite features."""
    f = _as_array(features)
    y = np.asarray(labels.detach().cpu().numpy() if hasattr(labels, "detach") else labels).reshape(-1)
    if f.ndim != 2:
        raise RdetError(f"features must be a (samples, dims) matrix, not of shape {tuple(f.shape)}")
    if len(y) != len(f):
        raise RdetError(f"{len(y)} labels for {len(f)} feature rows: one label per sample is needed")
    if not np.isfinite(f).all():
        bad = int((~np.isfinite(f).all(1)).sum())
        raise RdetError(f"features hold NaN or infinite values ({bad} of {len(f)} samples); "
                        f"re-extract them (fp16 overflow?) before scoring")
    if len(f) < 2:
        raise RdetError(f"{len(f)} sample(s): an estimator needs at least 2")
    _, y = np.unique(y, return_inverse=True)
    return f, y


def _check_source(source_probs, n: int) -> np.ndarray:
    p = _as_array(source_probs)
    if p.ndim != 2 or len(p) != n:
        raise RdetError(f"source probabilities of shape {tuple(p.shape)} for {n} samples: (samples, source classes) "
                        f"needed")
    if not np.isfinite(p).all() or (p < 0).any():
        raise RdetError("source probabilities hold NaN, infinite or negative values")
    return p


def register(needs_source: bool = False):
    def deco(fn):
        fn.needs_source = needs_source
        ESTIMATOR_REGISTRY.register(fn)
        return fn
    return deco


# --- LogME -----------------------------------------------------------------------------------------
def _spectrum(f: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``(U (N, k), s (k,))``: left singular vectors and singular values of ``f`` for its k
    numerically nonzero singular values. One decomposition serves every class. For N > D it is
    the eigendecomposition of the D x D Gram matrix F^T F (cheaper than an SVD of the tall F, as
    in the authors' code); its eigenvalues carry an absolute error of about eps * s_max^2, so
    singular values below sqrt(eps * max(N, D)) * s_max are taken as zero (dead feature dimensions
    would otherwise give noise directions)."""
    n, d = f.shape
    if n > d:
        sigma, v = np.linalg.eigh(f.T @ f)
        sigma, v = sigma[::-1], v[:, ::-1]
        s = np.sqrt(np.clip(sigma, 0, None))
        keep = s > np.sqrt(np.finfo(float).eps * max(n, d)) * s[0]
        return (f @ v[:, keep]) / s[keep], s[keep]
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > np.finfo(float).eps * max(n, d) * s[0]
    return u[:, keep], s[keep]


@register()
def logme(features, labels, *, max_iter: int = 11, tol: float = 1e-3, paper_logdet: bool = False) -> float:
    """LogME (You, Liu, Wang and Long, "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021): the mean over classes c of the maximised log evidence per
    sample of a Bayesian linear regression of the one-hot column t_c on the features F (N x D),

        L(a, b) = D/2 log a + N/2 log b - N/2 log 2pi - b/2 ||F m - t_c||^2 - a/2 ||m||^2 - 1/2 log|A|,
        A = a I + b F^T F,   m = b A^-1 F^T t_c,

    maximised over the prior precision a and noise precision b by the fixed-point iteration of
    You et al.'s follow-up (arXiv 2110.10545, Algorithm 2), everything in the eigenbasis of one
    decomposition F = U diag(s) V^T (sigma_i = s_i^2, x = U^T t_c, lambda = a / b):

        gamma = sum_i sigma_i / (sigma_i + lambda),
        ||m||^2 = sum_i sigma_i x_i^2 / (sigma_i + lambda)^2,
        ||F m - t||^2 = sum_i x_i^2 lambda^2 / (sigma_i + lambda)^2 + (||t||^2 - ||x||^2),
        a <- gamma / ||m||^2,   b <- (N - gamma) / ||F m - t||^2,

    until lambda changes by less than ``tol`` (relative), at most ``max_iter`` times; the
    defaults (11 steps, 1e-3, and 1e-5 added to both denominators) are those of the authors' code,
    whose numbers this reproduces.

    ``paper_logdet``: the authors' fixed-point code sums log|A| over the k = rank(F) nonzero
    sigma_i only. When D > N (more dimensions than samples) that leaves out (D - k) log a, and the
    score grows with a instead of being the evidence (e.g. 5.15 instead of -0.062 on a 20 x 50
    matrix); True adds the term back, which is the paper's equation (its ICML code path).
    Default False: equal to the reference code, so scores compare with published ones.
    """
    f, y = check_inputs(features, labels)
    n, d = f.shape
    u, s = _spectrum(f)
    if not len(s):  # all-zero features (a dead backbone) explain nothing: the lowest score
        return float("-inf")
    sigma = s ** 2
    evidences = []
    for c in range(y.max() + 1):
        t = (y == c).astype(np.float64)
        x2 = (u.T @ t) ** 2
        outside = t @ t - x2.sum()  # the part of t_c outside the span of F
        a = b = 1.0
        for _ in range(max_iter):
            lam = a / b
            gamma = (sigma / (sigma + lam)).sum()
            m2 = (sigma * x2 / (sigma + lam) ** 2).sum()
            res2 = (x2 * (lam / (sigma + lam)) ** 2).sum() + outside
            a, b = gamma / (m2 + 1e-5), (n - gamma) / (res2 + 1e-5)
            if abs(a / b - lam) / lam <= tol:
                break
        logdet = np.log(a + b * sigma).sum() + (d - len(sigma)) * np.log(a) * paper_logdet
        ev = d / 2 * np.log(a) + n / 2 * np.log(b) - n / 2 * np.log(2 * np.pi) - b / 2 * res2 - a / 2 * m2 - logdet / 2
        evidences.append(ev / n)
    return float(np.mean(evidences))


# --- LEEP, N-LEEP, NCE: how well a source label distribution predicts the target labels ------------
def _leep(q: np.ndarray, y: np.ndarray) -> float:
    """Mean log of the empirical predictor sum_z P(y | z) q(z | x) (see :func:`leep`)."""
    joint = np.zeros((y.max() + 1, q.shape[1]))
    np.add.at(joint, y, q)  # N * P(y, z)
    cond = joint / joint.sum(0, keepdims=True)  # P(y | z); every source class has mass under softmax/GMM posteriors
    return float(np.mean(np.log(np.einsum("nz,nz->n", q, cond[y]))))


@register(needs_source=True)
def leep(features, labels, *, source_probs) -> float:
    """LEEP (Nguyen, Hassner, Seeger and Archambeau, "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML 2020), with theta(x) = the source model's
    class probabilities (``source_probs``, N x C_s):

        P(y, z) = 1/N sum_i theta_z(x_i) [y_i = y],   P(y | z) = P(y, z) / sum_y' P(y', z),
        LEEP = 1/N sum_i log sum_z P(y_i | z) theta_z(x_i).

    ``features`` are only checked against the labels (the source head made ``source_probs``)."""
    f, y = check_inputs(features, labels)
    return _leep(_check_source(source_probs, len(f)), y)


@register()
def nleep(features, labels, *, variance: float = 0.8, components_per_class: int = 5, seed: int = 0) -> float:
    """N-LEEP (Li, Jia, Wu, Chen, Gong, Zhou and Wang, "Ranking Neural Checkpoints", CVPR 2021):
    LEEP with the source head replaced by a Gaussian mixture fitted to the target's own features.
    The features are reduced by PCA to the fewest components that keep ``variance`` of it (0.8
    in the paper); a GaussianMixture of V = min(``components_per_class`` x C, N) full-covariance
    components (5 x C, as the SFDA benchmark's N-LEEP) is fitted to them with ``seed``, and its
    posteriors q(v | x) take theta's place:

        N-LEEP = 1/N sum_i log sum_v P(y_i | v) q(v | x_i),   P(y | v) as in :func:`leep`.

    sklearn's PCA (full SVD) and GaussianMixture (k-means initialisation under ``seed``):
    the same seed gives the same score."""
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    f, y = check_inputs(features, labels)
    z = PCA(n_components=variance, svd_solver="full").fit_transform(f)
    k = min(components_per_class * (y.max() + 1), len(f))
    gmm = GaussianMixture(n_components=k, covariance_type="full", random_state=seed).fit(z)
    return _leep(gmm.predict_proba(z), y)


@register(needs_source=True)
def nce(features, labels, *, source_probs) -> float:
    """NCE, negative conditional entropy (Tran, Nguyen and Hassner, "Transferability and
    Hardness of Supervised Classification Tasks", ICCV 2019), with the source pseudo-label
    z_i = argmax of the source model's probabilities (``source_probs``):

        NCE = -H(Y | Z) = sum_{y, z} P(y, z) log (P(y, z) / P(z)),   P the empirical joint of (y_i, z_i).

    0 log 0 = 0; the score is <= 0, 0 when the pseudo-label determines the target label."""
    f, y = check_inputs(features, labels)
    z = _check_source(source_probs, len(f)).argmax(1)
    joint = np.zeros((y.max() + 1, z.max() + 1))
    np.add.at(joint, (y, z), 1.0 / len(y))
    pz = joint.sum(0)
    nz = joint > 0
    return float((joint[nz] * np.log(joint[nz] / np.broadcast_to(pz, joint.shape)[nz])).sum())


# --- H-score ---------------------------------------------------------------------------------------
@register()
def hscore(features, labels) -> float:
    """H-score (Bao, Li, Huang, Liao, Zhao and Tong, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019):

        H(f) = tr( cov(f(X))^+ cov(E[f(X) | Y]) ),

    both covariances over the N samples, E[f | Y] the class mean of each sample's class. The
    inverse is the pseudo-inverse over the features' own span: eigenvalues of cov(f) below
    max(N, D) * eps times the largest are zero. With D >= N - 1 the features span every centred
    direction and H is the number of classes minus one for any backbone: use LogME, SFDA or
    k-NN there."""
    f, y = check_inputs(features, labels)
    f = f - f.mean(0)
    means = np.zeros((y.max() + 1, f.shape[1]))
    np.add.at(means, y, f)
    means /= np.bincount(y)[:, None]
    g = means[y]
    w, v = np.linalg.eigh(f.T @ f / len(f))
    keep = w > max(f.shape) * np.finfo(float).eps * w.max()
    gv = g @ v[:, keep]  # cov(g) in the eigenbasis of cov(f)
    return float(((gv * gv).sum(0) / len(f) / w[keep]).sum())


# --- SFDA ------------------------------------------------------------------------------------------
def _largest_eig(a: np.ndarray, steps: int = 3) -> float:
    """The authors' estimate of the largest eigenvalue of a symmetric PSD ``a``: ``steps`` double
    power iterations from its row sums, then the Rayleigh-like quotient x^T A y."""
    x = a.sum(1)
    for _ in range(steps):
        y = a @ x
        y /= np.linalg.norm(y)
        x = a @ y
        x /= np.linalg.norm(x)
    return float(x @ a @ y)


def _fda_probs(f: np.ndarray, y: np.ndarray, lam: float = None) -> Tuple[np.ndarray, float]:
    """``(p(y | x) (N, C), lambda)`` of SFDA's regularised Fisher classifier (see :func:`sfda`)."""
    c = y.max() + 1
    prior = np.bincount(y, minlength=c) / len(y)
    means = np.zeros((c, f.shape[1]))
    np.add.at(means, y, f)
    means /= np.bincount(y, minlength=c)[:, None]
    d = f - means[y]
    sw = d.T @ d / len(f)  # sum_c pi_c cov_c with pi_c = N_c / N and cov_c biased (1 / N_c)
    if lam is None:
        lam = max(np.exp(-5 * _largest_eig(sw)), 1e-10)
    reg = (1 - lam) * sw + lam * np.trace(sw) / len(sw) * np.eye(len(sw))
    coef = np.linalg.solve(reg, means.T).T  # mu_c^T S^-1
    logits = f @ coef.T - 0.5 * (coef * means).sum(1) + np.log(prior)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return p / p.sum(1, keepdims=True), lam


@register()
def sfda(features, labels) -> float:
    """SFDA, Self-challenging Fisher Discriminant Analysis (Shao, Zhao, Ge, Liu, Zhang, Luo and
    Li, "Not All Models Are Equal: Predicting Model Transferability in a Self-challenging Fisher
    Space", ECCV 2022).

    1. Regularised Fisher space: within-class scatter S_w = sum_c pi_c cov_c, shrunk as
       S = (1 - lambda) S_w + lambda tr(S_w)/D I with lambda = max(exp(-5 sigma_1(S_w)), 1e-10)
       (sigma_1 by three double power iterations, as the authors' code). The class-conditional
       Gaussians in the Fisher space give

           p(y | x) = softmax_y( x^T U U^T mu_y - 1/2 mu_y^T U U^T mu_y + log pi_y ),

       and with all D Fisher directions U kept (as the authors' code does), U^T S U = I makes
       U U^T = S^-1: a regularised LDA, computed here by one linear solve instead of the
       generalised eigenproblem S_b u = l S u.
    2. ConfMix, the self-challenge: each sample moves towards the mean of the other classes'
       means in proportion to its doubt, x' = p x + (1 - p) mean_{c != y} mu_c, with
       p = softmax_c(p(c | x))_y (the authors' code softens the probabilities once more).
    3. The same classifier (same lambda) refitted on x'; SFDA = 1/N sum_i p(y_i | x'_i)
       (no log, as the authors: it is unstable for near-certain wrong predictions).
    """
    f, y = check_inputs(features, labels)
    c = y.max() + 1
    if c < 2:
        raise RdetError("SFDA needs at least two classes")
    p, lam = _fda_probs(f, y)
    soft = np.exp(p) / np.exp(p).sum(1, keepdims=True)
    conf = soft[np.arange(len(y)), y][:, None]
    means = np.zeros((c, f.shape[1]))
    np.add.at(means, y, f)
    means /= np.bincount(y)[:, None]
    others = (means.sum(0) - means) / (c - 1)
    mixed = conf * f + (1 - conf) * others[y]
    p2, _ = _fda_probs(mixed, y, lam)
    return float(p2[np.arange(len(y)), y].mean())


# --- k-NN probe ------------------------------------------------------------------------------------
@register()
def knn(features, labels, *, k: int = 10, block: int = 1024) -> float:
    """Leave-one-out k-nearest-neighbour accuracy in [0, 1]: each sample is classified by a
    majority vote of the ``k`` most cosine-similar *other* samples (features L2-normalised),

        kNN = 1/N sum_i [ argmax_c #{j in N_k(i) : y_j = c} = y_i ],   N_k(i) excludes i,

    vote ties going to the lower class id (a tie in similarity at the k-th place is broken
    arbitrarily: it needs two samples with identical features). Leave-one-out
    rather than a split: every labelled sample is both probe and reference, no split seed, and
    for small sets nothing is held out. A class with one sample is never predicted right for
    that sample (it has no other member): as with any held-out evaluation. Memory: ``block``
    rows of the N x N similarity at a time."""
    f, y = check_inputs(features, labels)
    n = len(f)
    if not 1 <= k < n:
        raise RdetError(f"k-NN: k must be in [1, {n - 1}] for {n} samples, not {k}")
    f = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-300)
    c = y.max() + 1
    correct = 0
    for lo in range(0, n, block):
        sim = f[lo:lo + block] @ f.T
        rows = np.arange(len(sim))
        sim[rows, lo + rows] = -np.inf  # leave the sample itself out
        nbrs = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # the k most similar, in any order
        votes = np.zeros((len(sim), c))
        np.add.at(votes, (rows[:, None], y[nbrs]), 1)
        correct += int((votes.argmax(1) == y[lo:lo + block]).sum())
    return correct / n


ESTIMATOR_NAMES = ("logme", "leep", "nleep", "nce", "hscore", "sfda", "knn", "linear")


def get_estimator(name: str):
    """The registered function of ``name`` (``linear`` has none: the selection's heads)."""
    if name == "linear":
        raise RdetError("linear is the selection's validation-split heads (rdet.select.heads), not a function of "
                        "features and labels alone")
    if name not in ESTIMATOR_NAMES:
        raise RdetError(f"unknown estimator {name!r}; the estimators are: {', '.join(ESTIMATOR_NAMES)}")
    return ESTIMATOR_REGISTRY.get(name)
