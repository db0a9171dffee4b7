"""Datasets: the real loaders (``classification``, detectron2 registration) and, in ``offline``,
every piece of data rdet can use without a download."""
