"""Chi-square checks of sampled laws against the uniform law, shared by the generator tests."""

import math

import numpy as np


def chi2_quantile(df, z=3.29):
    """Wilson-Hilferty approximation of the chi-square quantile (z = 3.29: about 0.9995)."""
    return df * (1 - 2 / (9 * df) + z * math.sqrt(2 / (9 * df))) ** 3


def uniform_stat(rows, support):
    """Pearson's statistic of the observed rows against the uniform law on ``support``, and
    the counts per support point (in ``support``'s order)."""
    index = {tuple(s): i for i, s in enumerate(support)}
    counts = np.bincount([index[tuple(r)] for r in np.asarray(rows).tolist()], minlength=len(support))
    expected = len(rows) / len(support)
    return ((counts - expected) ** 2 / expected).sum(), counts
