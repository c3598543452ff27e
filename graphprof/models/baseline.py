"""``lr``: the logistic-regression baseline (no message passing): the strongest simple model a data scientist
would write, so that what the graph adds is measured against it.

It reads the user's own data only, in two parts side by side:

- the user features, standardised and PCA-reduced (scikit-learn's ``StandardScaler`` and ``PCA``, fitted on
  training users only);
- the user's bag of items, ``log(1 + count) * idf`` with rows L2-normalised (:mod:`graphprof.models.bag`; idf
  fitted label-free on every user). Item identity carries much of the signal on real data (on Deezer Europe a
  logistic regression on this bag alone scores a higher test AUC than on the dense features), and a low-rank
  SVD of it loses part of that.

One ``LogisticRegression`` (balanced class weights) on both, with ``C`` chosen on the validation users' macro-F1
(past :data:`SEARCH_MAX_ROWS` training users, ``C`` is chosen with fits on a seeded sample of them, and the chosen
``C`` is then fitted on all of them, starting from the sample's coefficients).
After fitting, the model is kept as its arrays (means, scales, components, idf, coefficients) and applied with
numpy and scipy, so saving and loading need no pickle and a loaded model predicts exactly what the fitted one did.
"""

from __future__ import annotations

import numpy as np

from graphprof.models.base import Model, ModelInput, feature_rows

BLOCK_ROWS = 1 << 15  # rows per block when applying the pipeline
#: users scored at once where every user is scored (a multiple of BLOCK_ROWS): their bag of items, not everyone's
SCORE_ROWS = BLOCK_ROWS * 32
#: training users past which ``C`` is searched on a seeded sample of this many of them (then the chosen ``C`` is
#: fitted on every training user): six fits on millions of rows would take most of an hour, and the validation
#: macro-F1 ranks the ``C`` values as well on a sample of this size
SEARCH_MAX_ROWS = 300_000
ARRAYS = ("scale_mean", "scale_scale", "pca_mean", "pca_components", "coef", "intercept")
BAG_ARRAYS = ("idf", "bag_coef")  # with ``bag``: the items' idf and their coefficients


def dense_beside_sparse(z: np.ndarray, bag):
    """``sp.hstack([sp.csr_matrix(z), bag], format="csr")`` (the same matrix, entries in the same order) written
    straight into one CSR: the stacking's intermediate copies are several times the design's size."""
    import scipy.sparse as sp

    n, k = z.shape
    counts = np.diff(bag.indptr)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts + k, out=indptr[1:])
    data = np.empty(int(indptr[-1]), dtype=np.float64)
    index_type = np.int32 if k + bag.shape[1] < 2**31 else np.int64
    indices = np.empty(int(indptr[-1]), dtype=index_type)
    dense_at = (indptr[:-1, None] + np.arange(k)).ravel()
    data[dense_at] = z.ravel()
    indices[dense_at] = np.tile(np.arange(k, dtype=index_type), n)
    del dense_at
    bag_at = np.repeat(indptr[:-1] + k - bag.indptr[:-1], counts) + np.arange(bag.nnz)
    data[bag_at] = bag.data
    indices[bag_at] = bag.indices + k
    out = sp.csr_matrix((data, indices, indptr), shape=(n, k + bag.shape[1]))
    out.eliminate_zeros()  # csr_matrix(z) keeps no zero of z
    return out


class LogisticBaseline(Model):
    """Logistic regression on standardised, PCA-reduced user features and the user's TF-IDF bag of items.

    Args:
        max_components: upper bound on PCA components.
        c_grid: candidate inverse regularisation strengths, picked on validation macro-F1.
        bag: read the bag of items beside the features (where the graph has purchases).
    """

    name = "lr"
    uses_graph = False  # its embeddings (the PCA coordinates) read the features only; its probabilities read the bag
    numpy_arrays = True  # saved and loaded as numpy: predicting needs neither torch nor scikit-learn

    def __init__(self, seed: int = 0, max_components: int = 64,
                 c_grid: tuple[float, ...] = (0.01, 0.1, 0.3, 1.0, 3.0, 10.0), bag: bool = True):
        super().__init__(seed=seed, max_components=max_components, c_grid=list(c_grid), bag=bag)

    def _fit(self, inputs: ModelInput, y, train_idx, val_idx) -> None:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
        from sklearn.preprocessing import StandardScaler

        from graphprof.models.bag import fit_idf, tfidf_bag

        x = inputs.features.matrix
        k = int(min(self.params["max_components"], x.shape[1], len(train_idx)))
        scale = StandardScaler().fit(x[train_idx])
        pca = PCA(n_components=k, svd_solver="full", random_state=self.seed).fit(scale.transform(x[train_idx]))
        # the designs of the users fitted and scored here only (training, validation), not of every user: at
        # millions of users every user's would be many GiB; two matrices, so the final fit reads the training
        # design itself rather than a copy of its rows
        bags, idf = (None, None), None
        if self.params["bag"] and inputs.graph is not None:
            counts = inputs.graph.purchase_matrix("count").tocsr()
            if counts.nnz:
                idf = fit_idf(counts)  # label-free: every user's purchases
                bags = (tfidf_bag(counts[train_idx], idf), tfidf_bag(counts[val_idx], idf))
            del counts
        with_bag = idf is not None

        def design(rows, bag):
            z = pca.transform(scale.transform(x[rows]))
            return z if bag is None else dense_beside_sparse(z, bag)

        design_tr, design_va = design(train_idx, bags[0]), design(val_idx, bags[1])
        del bags
        search = None
        if len(train_idx) > SEARCH_MAX_ROWS:  # C is chosen on a sample, the chosen C fitted on every training user
            rng = np.random.default_rng(self.seed)
            search = np.sort(rng.choice(len(train_idx), SEARCH_MAX_ROWS, replace=False))
        x_search = design_tr if search is None else design_tr[search]
        y_search = y[train_idx] if search is None else y[train_idx[search]]
        best = None
        for c in self.params["c_grid"]:
            lr = LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=self.seed)
            lr.fit(x_search, y_search)
            f1 = f1_score(y[val_idx], lr.predict(design_va), average="macro")
            if best is None or f1 > best[0]:
                best = (f1, c, lr)
        del x_search, design_va
        if search is not None:  # the same convex objective on every training user, started from the sample's
            # solution (warm_start): far fewer passes over millions of rows than from zero
            best[2].set_params(warm_start=True)
            best = (best[0], best[1], best[2].fit(design_tr, y[train_idx]))
        _, self.c_, lr = best
        self.arrays_ = {"scale_mean": scale.mean_, "scale_scale": scale.scale_, "pca_mean": pca.mean_,
                        "pca_components": pca.components_, "coef": lr.coef_[:, :k], "intercept": lr.intercept_}
        if with_bag:
            self.arrays_.update(idf=idf, bag_coef=lr.coef_[:, k:])
        if self.params == LogisticBaseline(seed=self.seed).params:  # the blend of the graph models reuses it
            from graphprof.models.blend import remember_baseline

            remember_baseline(self, inputs, y, train_idx, val_idx)

    def _bag_rows(self, inputs: ModelInput, rows: np.ndarray | None):
        """The TF-IDF bag of ``rows`` (every user where None), or None for a model fitted without one."""
        if "idf" not in self.arrays_:
            return None
        from graphprof.models.bag import tfidf_bag

        counts = inputs.graph.purchase_matrix("count").tocsr()
        return tfidf_bag(counts if rows is None else counts[rows], self.arrays_["idf"])

    def _embed(self, inputs: ModelInput) -> np.ndarray:
        return self._embed_x(inputs.features.matrix)

    def _embed_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        return self._embed_x(feature_rows(inputs.features, rows))  # per user: only the rows' features

    def _proba(self, inputs: ModelInput) -> np.ndarray:
        x = inputs.features.matrix
        if "idf" not in self.arrays_ or len(x) <= SCORE_ROWS:
            return self._proba_x(x, self._bag_rows(inputs, None))
        from graphprof.models.bag import tfidf_bag

        # the bag a slice of users at a time (the same rows' numbers: BLOCK_ROWS divides SCORE_ROWS)
        counts = inputs.graph.purchase_matrix("count").tocsr()
        out = np.empty((len(x), len(self.classes_)))
        for start in range(0, len(x), SCORE_ROWS):
            rows = slice(start, start + SCORE_ROWS)
            out[rows] = self._proba_x(x[rows], tfidf_bag(counts[rows], self.arrays_["idf"]))
        return out

    def _proba_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        return self._proba_x(feature_rows(inputs.features, rows), self._bag_rows(inputs, rows))

    def embed_blocks(self, inputs: ModelInput, block_rows: int):
        self._check_fitted()
        x = inputs.features.matrix
        step = max(block_rows // BLOCK_ROWS, 1) * BLOCK_ROWS  # whole BLOCK_ROWS blocks: the same numbers as embed
        for start in range(0, max(len(x), 1), step):
            yield self._embed_x(x[start:start + step])

    def _embed_x(self, x: np.ndarray) -> np.ndarray:
        return self._blocks(x, self._embed_block, self.arrays_["pca_components"].shape[0])

    def _proba_x(self, x: np.ndarray, bag=None) -> np.ndarray:
        """Probabilities from the features ``x`` and, for a model with a bag, the rows' TF-IDF ``bag``."""
        if bag is None and "idf" in self.arrays_:
            raise ValueError("lr: this model reads the bag of items; pass the rows' bag")  # an invariant
        return self._blocks(x, self._proba_block, len(self.classes_), bag)

    @staticmethod
    def _blocks(x: np.ndarray, fn, width: int, bag=None) -> np.ndarray:
        """``fn`` applied to ``BLOCK_ROWS`` rows at a time: the scaled and centred copies of a block stay small,
        where whole-matrix temporaries would each be as large as the features. A row's numbers do not depend on
        the other rows, up to the order in which BLAS sums a product (its kernel can change with the block's
        size)."""
        out = np.empty((len(x), width))
        for start in range(0, len(x), BLOCK_ROWS):
            block = slice(start, start + BLOCK_ROWS)
            out[block] = fn(x[block]) if bag is None else fn(x[block], bag[block])
        return out

    def _embed_block(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays_
        z = (x - a["scale_mean"]) / a["scale_scale"]
        return (z - a["pca_mean"]) @ a["pca_components"].T

    def _proba_block(self, x: np.ndarray, bag=None) -> np.ndarray:
        a = self.arrays_
        logits = self._embed_block(x) @ a["coef"].T + a["intercept"]
        if bag is not None:
            logits = logits + np.asarray(bag @ a["bag_coef"].T)
        if logits.shape[1] == 1:  # binary: scikit-learn keeps one coefficient row for the positive class
            from scipy.special import expit  # no overflow warning for large |logit|

            p1 = expit(logits[:, 0])
            return np.stack([1.0 - p1, p1], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def _state(self):
        config = {"C": self.c_, "bag": "idf" in self.arrays_}
        return config, {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in self.arrays_.items()}

    def _from_state(self, config, arrays) -> None:
        self.c_ = config["C"]
        names = ARRAYS + (BAG_ARRAYS if config.get("bag") else ())  # a config without "bag": features only
        self.arrays_ = {k: np.asarray(arrays[k]) for k in names}
