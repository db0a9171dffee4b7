"""rdet.select.estimators against their authors' code and against the papers' equations.

LogME, LEEP, NCE: the numbers below are what thuml/LogME's own ``LogME.py``, ``LEEP.py`` and
``NCE.py`` (commit 56551ca, run outside rdet with numpy 2.4.6 and numba 0.68.1) return on the
inputs :func:`_inputs` makes from its seed; they are data, not rdet's output. H-score, SFDA,
N-LEEP and the k-NN probe: their equations written out again here, plainly (loops, the
generalised eigenproblem SFDA's paper states), and compared; SFDA also against the outputs of
TencentARC/SFDA's own ``SFDA_Score`` (commit 3b7edf7, run outside rdet). Every case has a class
with one sample; ``wide`` has more feature dimensions than samples.
"""
import numpy as np
import pytest
import scipy.linalg
import torch

from rdet.core.errors import RdetError
from rdet.select import estimators as est

CASES = {"tall": (0, 60, 8, 4, 7), "wide": (1, 20, 50, 3, 6)}  # seed, N, D, classes, source classes


def _inputs(seed, n, d, c, cs):
    """Features (class centres + noise), labels (class 0 has one sample: index 5) and source
    probabilities (softmax of noisy logits); the same code made the reference numbers."""
    rng = np.random.default_rng(seed)
    y = rng.integers(1, c, n)
    y[5] = 0
    f = rng.normal(size=(c, d))[y] + rng.normal(size=(n, d))
    logits = 2.0 * rng.normal(size=(n, cs)) + f[:, :1]
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return f, y, p


# the authors' code on _inputs(*CASES[case]); "checksum": the inputs the reference saw
REFERENCE = {
    "tall": {"checksum": (138.20216828537372, 8.566456217683806, 120), "logme": -0.02968874124264504,
             "leep": -1.0847286783658043, "nce": -1.0154211206268984},
    "wide": {"checksum": (-171.63397544552743, 3.3950779410789087, 28), "logme": 5.151535448669918,
             "leep": -0.7529749150274919, "nce": -0.606842558824411},
}
# SFDA: TencentARC/SFDA's SFDA_Score (metrics.py, its utils.iterative_A; run outside rdet) on the
# case's features, on 0.2 x them and on label-free noise (see test_sfda_equals_its_equation)
SFDA_REFERENCE = {"tall": (0.8924942600614146, 0.8388943858773498, 0.35232811076721277),
                  "wide": (1.0, 1.0, 0.8809977541425862)}
# wide, paper_logdet: the reference fixed-point score plus -(D - k)/(2N) log(alpha_c) averaged over
# classes with the reference's own alphas; and the authors' ICML-2021 code path (_fit_icml: full
# D x D log-determinant, its own looser stopping rule) for the same matrix
WIDE_PAPER_LOGDET, WIDE_ICML = -0.0617665259924598, -0.06258738577830249


@pytest.fixture(params=sorted(CASES))
def case(request):
    f, y, p = _inputs(*CASES[request.param])
    return request.param, f, y, p


def _close(a, b, rel=1e-6):
    assert a == pytest.approx(b, rel=rel, abs=0), (a, b)


# --- the authors' code -----------------------------------------------------------------------------
def test_inputs_are_those_the_reference_saw(case):
    name, f, y, p = case
    s_f, s_p, s_y = REFERENCE[name]["checksum"]
    _close(f.sum(), s_f, 1e-12)
    _close(p.sum(0)[0], s_p, 1e-12)
    assert y.sum() == s_y and (y == 0).sum() == 1


def test_logme_leep_nce_equal_the_authors_code(case):
    name, f, y, p = case
    ref = REFERENCE[name]
    _close(est.logme(f, y), ref["logme"])
    _close(est.leep(f, y, source_probs=p), ref["leep"])
    _close(est.nce(f, y, source_probs=p), ref["nce"])


def test_logme_paper_logdet_restores_the_evidence_when_dims_exceed_samples():
    f, y, _ = _inputs(*CASES["wide"])
    full = est.logme(f, y, paper_logdet=True)
    _close(full, WIDE_PAPER_LOGDET)
    assert abs(full - WIDE_ICML) < 0.02 * abs(WIDE_ICML)  # the ICML code's evidence, up to its tolerance
    tall_f, tall_y, _ = _inputs(*CASES["tall"])
    assert est.logme(tall_f, tall_y, paper_logdet=True) == est.logme(tall_f, tall_y)  # N > D: no missing term


def test_scores_do_not_depend_on_class_ids_dtype_or_container(case):
    _, f, y, p = case
    shifted = y + 5  # classes 5.. instead of 0..: the classes present count
    for name in ("logme", "hscore", "sfda", "knn"):
        fn = est.get_estimator(name)
        _close(fn(torch.from_numpy(f).float(), torch.from_numpy(shifted)), fn(f.astype(np.float32), y), 1e-12)
    _close(est.leep(f, shifted, source_probs=torch.from_numpy(p)), est.leep(f, y, source_probs=p), 1e-12)


# --- the papers' equations, written again ----------------------------------------------------------
def _class_means(f, y):
    classes = sorted(set(y.tolist()))
    return classes, {c: f[y == c].mean(0) for c in classes}


def _hscore_equation(f, y):
    """tr(cov(f)^+ cov(E[f|y])), the pseudo-inverse taken on the span of the centred features:
    an orthonormal basis Q of that span, then the plain inverse of Q^T cov(f) Q."""
    n = len(f)
    mu = f.mean(0)
    _, means = _class_means(f, y)
    cov_f = sum(np.outer(fi - mu, fi - mu) for fi in f) / n
    cov_g = sum(np.outer(means[yi] - mu, means[yi] - mu) for yi in y) / n
    _, s, vt = np.linalg.svd(f - mu, full_matrices=False)
    q = vt[s > 1e-8 * s[0]].T
    return np.trace(np.linalg.inv(q.T @ cov_f @ q) @ (q.T @ cov_g @ q))


def test_hscore_equals_its_equation(case):
    _, f, y, _ = case
    _close(est.hscore(f, y), _hscore_equation(f, y))
    if f.shape[1] < f.shape[0]:  # full-rank covariance: the textbook inverse
        _, means = _class_means(f, y)
        g = np.stack([means[c] for c in y])
        _close(est.hscore(f, y), np.trace(np.linalg.inv(np.cov(f.T)) @ np.cov(g.T)))
    else:  # features span every centred direction: H = classes - 1 for any features
        _close(est.hscore(f, y), len(set(y.tolist())) - 1)


def _sfda_equation(f, y):
    """SFDA as its paper states it: regularised within-class scatter, the Fisher directions U of
    the generalised eigenproblem S_b u = l S_w' u, the Gaussian classifier in that space, ConfMix,
    the same again on the mixed features, mean probability of the true class."""
    classes, _ = _class_means(f, y)
    n, d = f.shape

    def largest_eigenvalue(a):  # the authors' three double power steps from the row sums
        x = a.sum(1)
        for _ in range(3):
            z = a @ x
            z = z / np.linalg.norm(z)
            x = a @ z
            x = x / np.linalg.norm(x)
        return x @ a @ z

    def fit_predict(x, lam):
        prior = {c: np.mean(y == c) for c in classes}
        mean = {c: x[y == c].mean(0) for c in classes}
        sw = sum(prior[c] * np.cov(x[y == c].T, bias=True).reshape(d, d) for c in classes)
        if lam is None:
            lam = max(np.exp(-5 * largest_eigenvalue(sw)), 1e-10)
        shrink = lambda m: (1 - lam) * m + lam * np.trace(m) / d * np.eye(d)
        sw_r = shrink(sw)
        sb = shrink(np.cov(x.T, bias=True)) - sw_r
        _, u = scipy.linalg.eigh(sb, sw_r)
        proj = lambda v: u.T @ v
        probs = np.zeros((n, len(classes)))
        for i in range(n):
            logit = [proj(x[i]) @ proj(mean[c]) - 0.5 * proj(mean[c]) @ proj(mean[c]) + np.log(prior[c])
                     for c in classes]
            e = np.exp(np.array(logit) - max(logit))
            probs[i] = e / e.sum()
        return probs, lam, mean

    probs, lam, mean = fit_predict(f, None)
    mixed = f.copy()
    for i in range(n):
        soft = np.exp(probs[i]) / np.exp(probs[i]).sum()
        conf = soft[classes.index(y[i])]
        other = np.mean([mean[c] for c in classes if c != y[i]], axis=0)
        mixed[i] = conf * f[i] + (1 - conf) * other
    probs2, _, _ = fit_predict(mixed, lam)
    return np.mean([probs2[i, classes.index(y[i])] for i in range(n)])


def test_sfda_equals_its_equation(case):
    name, f, y, _ = case
    _close(est.sfda(f, y), _sfda_equation(f, y))
    # more dimensions than samples separates the training set perfectly (SFDA 1.0 either way):
    # small label-free features as well, where the shrinkage is large and the score is not 1
    noise = np.random.default_rng(5).normal(size=f.shape) * 0.1
    for g, ref in zip((f, 0.2 * f, noise), SFDA_REFERENCE[name]):
        _close(est.sfda(g, y), _sfda_equation(g, y))
        _close(est.sfda(g, y), ref)  # and the authors' code
    assert est.sfda(noise, y) < 0.9


def _nleep_equation(f, y, per_class, seed):
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture

    z = PCA(n_components=0.8, svd_solver="full").fit_transform(f)
    classes = sorted(set(y.tolist()))
    v = min(per_class * len(classes), len(f))
    q = GaussianMixture(n_components=v, covariance_type="full", random_state=seed).fit(z).predict_proba(z)
    joint = {(c, k): sum(q[i, k] for i in range(len(y)) if y[i] == c) / len(y) for c in classes for k in range(v)}
    total = 0.0
    for i in range(len(y)):
        total += np.log(sum(joint[y[i], k] / sum(joint[c, k] for c in classes) * q[i, k] for k in range(v)))
    return total / len(y)


def test_nleep_equals_its_equation(case):
    _, f, y, _ = case
    for per_class in (1, 5):  # wide at 5 per class: a component per sample, N-LEEP 0 (the maximum)
        score = est.nleep(f, y, components_per_class=per_class, seed=3)
        _close(score, _nleep_equation(f, y, per_class, seed=3), 1e-6 if score else 0)
        assert est.nleep(f, y, components_per_class=per_class, seed=3) == score  # seeded: repeatable
        assert score < -0.05 or per_class == 5


def _knn_equation(f, y, k):
    correct = 0
    for i in range(len(f)):
        sims = [(-(f[i] @ f[j]) / np.linalg.norm(f[i]) / np.linalg.norm(f[j]), j) for j in range(len(f)) if j != i]
        votes = {}
        for _, j in sorted(sims)[:k]:
            votes[y[j]] = votes.get(y[j], 0) + 1
        best = max(votes.values())
        correct += min(c for c, v in votes.items() if v == best) == y[i]
    return correct / len(f)


@pytest.mark.parametrize("k", [1, 4, 10])
def test_knn_equals_its_equation(case, k):
    _, f, y, _ = case
    _close(est.knn(f, y, k=k, block=7), _knn_equation(f, y, k))  # block 7: rows in several blocks


def test_estimators_order_informative_above_noise_features():
    """Real numeric behaviour, not just agreement: features that carry the labels score above
    features that do not, for every estimator that reads features."""
    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(5), 40)
    good = rng.normal(size=(5, 16))[y] * 2 + rng.normal(size=(200, 16))
    noise = rng.normal(size=(200, 16))
    for name in ("logme", "nleep", "hscore", "sfda", "knn"):
        fn = est.get_estimator(name)
        assert fn(good, y) > fn(noise, y), name
    p_good = np.eye(5)[y] * 0.9 + 0.02  # a source head that knows the labels
    p_noise = np.full((200, 5), 0.2) + np.eye(5)[rng.integers(0, 5, 200)] * 0.5
    for name in ("leep", "nce"):
        fn = est.get_estimator(name)
        assert fn(good, y, source_probs=p_good) > fn(good, y, source_probs=p_noise), name


# --- refusals ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n in est.ESTIMATOR_NAMES if n != "linear"])
def test_bad_inputs_are_refused_in_one_line(name):
    f, y, p = _inputs(*CASES["tall"])
    fn = est.get_estimator(name)
    extra = {"source_probs": p} if fn.needs_source else {}
    with pytest.raises(RdetError, match="59 labels for 60 feature rows") as e:
        fn(f, y[:-1], **extra)
    assert "\n" not in str(e.value)
    for bad in (np.nan, np.inf):
        g = f.copy()
        g[3, 2] = bad
        with pytest.raises(RdetError, match=r"NaN or infinite values \(1 of 60 samples\)") as e:
            fn(g, y, **extra)
        assert "\n" not in str(e.value)


def test_unknown_estimator_and_bad_source_probabilities():
    with pytest.raises(RdetError, match="unknown estimator 'logmee'.*logme, leep"):
        est.get_estimator("logmee")
    with pytest.raises(RdetError, match="linear is the selection's validation-split heads"):
        est.get_estimator("linear")
    f, y, p = _inputs(*CASES["tall"])
    with pytest.raises(RdetError, match="source probabilities of shape"):
        est.leep(f, y, source_probs=p[:10])
    with pytest.raises(RdetError, match="k must be in"):
        est.knn(f, y, k=60)
