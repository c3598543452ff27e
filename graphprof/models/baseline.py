"""``lr``: the logistic-regression baseline on the user features (no message passing).

A scikit-learn ``Pipeline(StandardScaler, PCA, LogisticRegression)`` fitted on training users only, with the
regularisation ``C`` chosen on the validation users. After fitting, the pipeline is kept as its arrays
(means, scales, components, coefficients) and applied with numpy, so saving and loading need no pickle and
a loaded model predicts exactly what the fitted one did.
"""

from __future__ import annotations

import numpy as np

from graphprof.models.base import Model, ModelInput, feature_rows

BLOCK_ROWS = 1 << 15  # rows per block when applying the pipeline
ARRAYS = ("scale_mean", "scale_scale", "pca_mean", "pca_components", "coef", "intercept")


class LogisticBaseline(Model):
    """Logistic regression on standardised, PCA-reduced user features.

    Args:
        max_components: upper bound on PCA components.
        c_grid: candidate inverse regularisation strengths, picked on validation macro-F1.
    """

    name = "lr"
    uses_graph = False
    numpy_arrays = True  # saved and loaded as numpy: predicting needs neither torch nor scikit-learn

    def __init__(self, seed: int = 0, max_components: int = 64, c_grid: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)):
        super().__init__(seed=seed, max_components=max_components, c_grid=list(c_grid))

    def _fit(self, inputs: ModelInput, y, train_idx, val_idx) -> None:
        from sklearn.decomposition import PCA
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import f1_score
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        x = inputs.features.matrix
        k = int(min(self.params["max_components"], x.shape[1], len(train_idx)))
        best = None
        for c in self.params["c_grid"]:
            pipe = Pipeline([
                ("scale", StandardScaler()),
                ("pca", PCA(n_components=k, svd_solver="full", random_state=self.seed)),
                ("lr", LogisticRegression(C=c, class_weight="balanced", max_iter=3000, random_state=self.seed)),
            ]).fit(x[train_idx], y[train_idx])
            f1 = f1_score(y[val_idx], pipe.predict(x[val_idx]), average="macro")
            if best is None or f1 > best[0]:
                best = (f1, c, pipe)
        _, self.c_, pipe = best
        scale, pca, lr = pipe.named_steps["scale"], pipe.named_steps["pca"], pipe.named_steps["lr"]
        self.arrays_ = {"scale_mean": scale.mean_, "scale_scale": scale.scale_, "pca_mean": pca.mean_,
                        "pca_components": pca.components_, "coef": lr.coef_, "intercept": lr.intercept_}

    def _embed(self, inputs: ModelInput) -> np.ndarray:
        return self._embed_x(inputs.features.matrix)

    def _embed_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        return self._embed_x(feature_rows(inputs.features, rows))  # per user: only the rows' features

    def _proba(self, inputs: ModelInput) -> np.ndarray:
        return self._proba_x(inputs.features.matrix)

    def _proba_rows(self, inputs: ModelInput, rows: np.ndarray) -> np.ndarray:
        return self._proba_x(feature_rows(inputs.features, rows))

    def _embed_x(self, x: np.ndarray) -> np.ndarray:
        return self._blocks(x, self._embed_block, self.arrays_["pca_components"].shape[0])

    def _proba_x(self, x: np.ndarray) -> np.ndarray:
        return self._blocks(x, self._proba_block, len(self.classes_))

    @staticmethod
    def _blocks(x: np.ndarray, fn, width: int) -> np.ndarray:
        """``fn`` applied to ``BLOCK_ROWS`` rows at a time: the scaled and centred copies of a block stay small,
        where whole-matrix temporaries would each be as large as the features. A row's numbers do not depend on
        the other rows, up to the order in which BLAS sums a product (its kernel can change with the block's
        size)."""
        out = np.empty((len(x), width))
        for start in range(0, len(x), BLOCK_ROWS):
            out[start:start + BLOCK_ROWS] = fn(x[start:start + BLOCK_ROWS])
        return out

    def _embed_block(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays_
        z = (x - a["scale_mean"]) / a["scale_scale"]
        return (z - a["pca_mean"]) @ a["pca_components"].T

    def _proba_block(self, x: np.ndarray) -> np.ndarray:
        a = self.arrays_
        logits = self._embed_block(x) @ a["coef"].T + a["intercept"]
        if logits.shape[1] == 1:  # binary: scikit-learn keeps one coefficient row for the positive class
            from scipy.special import expit  # no overflow warning for large |logit|

            p1 = expit(logits[:, 0])
            return np.stack([1.0 - p1, p1], axis=1)
        logits = logits - logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        return e / e.sum(axis=1, keepdims=True)

    def _state(self):
        return {"C": self.c_}, {k: np.asarray(v, dtype=np.float64) for k, v in self.arrays_.items()}

    def _from_state(self, config, arrays) -> None:
        self.c_ = config["C"]
        self.arrays_ = {k: np.asarray(arrays[k]) for k in ARRAYS}
