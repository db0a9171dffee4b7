"""Choosing a backbone for a dataset: rank robust models by fixed-feature transfer accuracy on a
validation split of the training data (``python -m rdet select``).

* ``models``: catalog names, glob patterns and files -> :class:`ModelRef`;
* ``cache``: the on-disk feature cache and its keys;
* ``heads``: SGD heads over the lr grid and L-BFGS logistic regression on cached features;
* ``fixed``: one model's selection (:func:`select_one`);
* the study section and cell kind ``select`` live in ``rdet.study.kinds.select``;
* ``ranking``: the ranked table, the validation-vs-test summary and the plot;
* ``full``: the top-k fine-tuned with the paper's full-network protocol;
* ``estimators``: transferability estimators (LogME, LEEP, N-LEEP, NCE, H-score, SFDA, k-NN), one
  registry; ``scoring``: every estimator on a finished selection's cached features;
* ``agreement``: Kendall tau, weighted tau and top-1 regret of a ranking against an accuracy;
* ``against_paper``: the rankings against the paper's Tables 8-11 (``--against-paper``).
"""
from rdet.config import get_select_cfg
from rdet.select.fixed import select_one, selection_data
from rdet.select.models import ModelRef, resolve_models

__all__ = ["get_select_cfg", "select_one", "selection_data", "ModelRef", "resolve_models"]
