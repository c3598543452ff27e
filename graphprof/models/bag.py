"""The users' bag of items as ``lr`` and ``sign`` read it (numpy and scipy only: ``lr`` imports no torch): ``log(1 + count) * idf``, rows L2-normalised.

``idf`` is fitted label-free on every user of the graph a model is fitted on (``log((1 + users) / (1 + users who
bought the item)) + 1``, scikit-learn's smooth idf) and saved with the model, so a graph with more users (``graphprof
predict``) is read in the same space.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def row_scale(m: sp.csr_matrix, norm: str) -> sp.csr_matrix:
    """Rows divided by their L1 (``"l1"``) or L2 (``"l2"``) norm; empty rows stay empty."""
    m = m.tocsr()
    if norm == "l1":
        s = np.asarray(abs(m).sum(axis=1)).ravel()
    else:
        s = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    return sp.csr_matrix(sp.diags(inv) @ m)


def fit_idf(counts: sp.csr_matrix) -> np.ndarray:
    """Smooth idf per item ``[num_items]`` from the user x item counts of every user."""
    # users per item: the stored entries of each column (a column count, not a CSC copy of the matrix)
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    return np.log((1.0 + counts.shape[0]) / (1.0 + df)) + 1.0


def tfidf_bag(counts: sp.csr_matrix, idf: np.ndarray) -> sp.csr_matrix:
    """``log(1 + count) * idf``, rows L2-normalised ``[rows, num_items]`` (an empty row stays empty)."""
    if counts.shape[1] != len(idf):
        # an invariant: graphprof predict keeps the saved graph's items
        raise ValueError(f"the graph must have the {len(idf)} items the model was fitted on. "
                         f"Got {counts.shape[1]} instead")
    return row_scale(counts.log1p() @ sp.diags(idf), "l2")
