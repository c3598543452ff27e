"""The model contract, checked for every registered model (like scikit-learn's ``parametrize_with_checks``).

Shapes and determinism only, never accuracy: accuracy lives in benchmarks/ and the end-to-end check.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from fixtures_small import build_shop, load_inputs, small_kwargs

from graphprof.errors import ArtifactError, ConfigError, GraphprofError
from graphprof.models import MODELS, Model, get_model
from graphprof.training import evaluate

MODEL_NAMES = sorted(MODELS)
# gender is binary (scikit-learn keeps one coefficient row), age_band has four classes
TARGETS = ("gender", "age_band")


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    work = build_shop(tmp_path_factory.mktemp("models_shop"))
    inputs, users = load_inputs(work)
    targets = {}
    for name in TARGETS:
        target = evaluate.make_target(users, inputs.graph.user_ids, name)
        targets[name] = (target, evaluate.split(target, seed=0))
    return inputs, targets


def _fit(shop, model_name, target_name="age_band", seed=0, y=None):
    inputs, targets = shop
    target, parts = targets[target_name]
    cls = MODELS[model_name]
    model = cls(seed=seed, **small_kwargs(cls))
    fitted = model.fit(inputs, target.y if y is None else y, parts["train"], parts["val"], target.classes)
    return model, fitted


def _proba(model, shop) -> np.ndarray:
    return model.predict_proba(shop[0]).to_numpy()


# ------------------------------------------------------------------------------------------- registry
def test_registry_is_not_empty_and_names_match():
    assert MODEL_NAMES, "no model registered"
    for name, cls in MODELS.items():
        assert issubclass(cls, Model)
        assert cls.name == name
        assert get_model(name) is cls


def test_get_model_unknown_name_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"Got 'nope' instead") as info:
        get_model("nope")
    for name in MODELS:
        assert repr(name)[1:-1] in str(info.value)
    assert f"({', '.join(MODELS)})" in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GraphprofError)


# ------------------------------------------------------------------------------------------- contract
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_init_stores_hyper_parameters_only(name):
    cls = MODELS[name]
    model = cls(seed=3)
    assert model.seed == 3
    json.dumps(model.params)  # hyper-parameters must be JSON-serialisable (they go to config.json)
    assert not any(k.endswith("_") and not k.startswith("_") for k in vars(model)), vars(model)
    assert cls(seed=3, **model.params).params == model.params


@pytest.mark.parametrize("target_name", TARGETS)
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fit_returns_self_and_proba_is_a_frame_by_user_id(shop, name, target_name):
    inputs, targets = shop
    target, _ = targets[target_name]
    model, fitted = _fit(shop, name, target_name)
    assert fitted is model
    assert model.classes_ == target.classes
    proba = model.predict_proba(inputs)
    assert isinstance(proba, pd.DataFrame)
    assert proba.shape == (inputs.graph.num_users, len(target.classes))
    assert list(proba.index) == list(inputs.graph.user_ids)
    assert proba.index.name == "user_id"
    assert list(proba.columns) == target.classes
    values = proba.to_numpy()
    assert np.isfinite(values).all()
    assert (values >= 0).all() and (values <= 1).all()
    np.testing.assert_allclose(values.sum(axis=1), 1.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_embed_is_finite_one_row_per_user(shop, name):
    inputs = shop[0]
    model, _ = _fit(shop, name)
    emb = model.embed(inputs)
    assert isinstance(emb, np.ndarray)
    assert emb.ndim == 2
    assert emb.shape[0] == inputs.graph.num_users
    assert emb.shape[1] >= 1
    assert np.isfinite(emb).all()
    np.testing.assert_array_equal(model.embed(inputs), emb)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_same_seed_gives_identical_probabilities(shop, name):
    first, _ = _fit(shop, name, seed=7)
    second, _ = _fit(shop, name, seed=7)
    assert np.array_equal(_proba(first, shop), _proba(second, shop))
    assert np.array_equal(first.embed(shop[0]), second.embed(shop[0]))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_never_reads_labels_outside_train_and_val(shop, name):
    inputs, targets = shop
    target, parts = targets["age_band"]
    model, _ = _fit(shop, name)
    y = target.y.copy()
    seen = np.zeros(len(y), dtype=bool)
    seen[parts["train"]] = True
    seen[parts["val"]] = True
    unseen = np.flatnonzero(~seen)  # test users and unlabelled users
    assert len(parts["test"]) > 0 and np.isin(parts["test"], unseen).all()
    n_classes = len(target.classes)
    y[unseen] = np.where(y[unseen] >= 0, (y[unseen] + 1) % n_classes, 0)  # every unseen label changes
    assert (y[parts["test"]] != target.y[parts["test"]]).all()
    other, _ = _fit(shop, name, y=y)
    assert np.array_equal(_proba(model, shop), _proba(other, shop))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_save_load_round_trip_without_pickle(shop, name, tmp_path):
    inputs = shop[0]
    model, _ = _fit(shop, name)
    path = tmp_path / "model"
    model.save(path)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    assert files, "save wrote nothing"
    assert {p.suffix for p in files} <= {".json", ".safetensors"}, files
    for p in files:
        data = p.read_bytes()
        if p.suffix == ".json":
            json.loads(data)
            continue
        # safetensors: an 8-byte little-endian header length, then that many bytes of JSON, then raw tensors
        # (a pickle would start with its protocol byte 0x80 followed by no such header; a torch.save zip with PK)
        n = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + n])
        assert all("dtype" in v and "data_offsets" in v for k, v in header.items() if k != "__metadata__"), p
    loaded = MODELS[name].load(path)
    assert type(loaded) is type(model)
    assert loaded.seed == model.seed
    assert loaded.params == model.params
    assert loaded.classes_ == model.classes_
    before, after = model.predict_proba(inputs), loaded.predict_proba(inputs)
    pd.testing.assert_frame_equal(before, after, check_exact=True)
    assert np.array_equal(model.embed(inputs), loaded.embed(inputs))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_load_with_another_model_class_is_refused(shop, name, tmp_path):
    others = [n for n in MODEL_NAMES if n != name]
    if not others:
        pytest.skip("only one model registered")
    model, _ = _fit(shop, name)
    model.save(tmp_path / "model")
    with pytest.raises(ArtifactError, match=rf"model must be '{others[0]}'. Got '{name}' instead"):
        MODELS[others[0]].load(tmp_path / "model")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_load_missing_model_says_which_command_writes_it(name, tmp_path):
    with pytest.raises(ArtifactError, match=r"model\.json: not found; run 'graphprof train'"):
        MODELS[name].load(tmp_path / "nothing")


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_unfitted_model_raises_attribute_error(shop, name, tmp_path):
    model = MODELS[name]()
    with pytest.raises(AttributeError, match="not fitted yet; call fit"):
        model.predict_proba(shop[0])
    with pytest.raises(AttributeError, match="not fitted yet; call fit"):
        model.embed(shop[0])
    with pytest.raises(AttributeError, match="not fitted yet; call fit"):
        model.save(tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_lr_in_row_blocks_gives_the_whole_matrix_numbers(monkeypatch):
    """lr applies its pipeline in blocks of rows: the numbers are those of one pass (to BLAS's summation order)."""
    from graphprof.models import baseline

    rng = np.random.default_rng(11)
    model = baseline.LogisticBaseline()
    d, k = 9, 5
    model.arrays_ = {"scale_mean": rng.normal(size=d), "scale_scale": rng.random(d) + 0.5,
                     "pca_mean": rng.normal(size=d), "pca_components": rng.normal(size=(k, d)),
                     "coef": rng.normal(size=(3, k)), "intercept": rng.normal(size=3)}
    model.classes_ = ["a", "b", "c"]
    x = rng.normal(size=(1000, d))
    whole_p, whole_e = model._proba_x(x), model._embed_x(x)
    monkeypatch.setattr(baseline, "BLOCK_ROWS", 7)
    np.testing.assert_allclose(model._proba_x(x), whole_p, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(model._embed_x(x), whole_e, rtol=1e-12, atol=1e-12)
    assert model._proba_x(x[:0]).shape == (0, 3)


@pytest.mark.parametrize("route, n_train, batch, patience, expected", [
    ("full", 17_000, None, 30, 30),          # one step an epoch: patience in epochs
    ("minibatch", 17_000, None, 30, 5),      # 17 steps an epoch: 2 epochs of steps, but at least 5
    ("minibatch", 2_048, 1024, 30, 15),      # 2 steps an epoch: 15 epochs
    ("minibatch", 1_793, None, 30, 5),       # batches of 225: 8 steps an epoch, 4 epochs of steps, at least 5
    ("minibatch", 17_000, None, 3, 3),       # never more epochs than asked for
])
def test_gnn_patience_counts_optimiser_steps(route, n_train, batch, patience, expected):
    from graphprof.models.gnn import HeteroSAGE

    model = HeteroSAGE(patience=patience, batch_size=batch)
    model.route_ = route
    assert model._patience_epochs(n_train) == expected


def test_lr_reads_the_bag_of_items_and_its_logits_are_the_two_parts(shop, tmp_path):
    """lr's logit is the dense part plus the bag's part; a label carried by one item puts the bag's largest
    coefficient on that item; a model saved without a bag loads and predicts as it did."""
    import scipy.sparse as sp
    from scipy.special import expit

    from graphprof.models.bag import fit_idf, tfidf_bag
    from graphprof.models.baseline import LogisticBaseline

    inputs, targets = shop
    _, parts = targets["gender"]
    counts = inputs.graph.purchase_matrix("count").tocsr()
    buyers = np.diff(counts.tocsc().indptr)
    item = int(np.argsort(buyers)[len(buyers) * 3 // 4])  # a fairly popular item
    y = (counts[:, item].toarray().ravel() > 0).astype(np.int64)  # "bought this item"
    train, val = parts["train"], parts["val"]
    test = np.setdiff1d(np.arange(len(y)), np.r_[train, val])
    with_bag = LogisticBaseline(c_grid=(10.0,)).fit(inputs, y, train, val, ["no", "yes"])
    dense = LogisticBaseline(c_grid=(10.0,), bag=False).fit(inputs, y, train, val, ["no", "yes"])
    assert "idf" in with_bag.arrays_ and "idf" not in dense.arrays_
    p_bag = with_bag.proba(inputs)[:, 1]
    from sklearn.metrics import roc_auc_score

    assert y[test].sum() >= 3
    assert roc_auc_score(y[test], p_bag[test]) > 0.95
    assert np.abs(with_bag.arrays_["bag_coef"][0, item]) == np.abs(with_bag.arrays_["bag_coef"][0]).max()

    a = with_bag.arrays_
    z = with_bag._embed_x(inputs.features.matrix)
    bag = tfidf_bag(counts, fit_idf(counts))
    assert sp.issparse(bag) and np.allclose(a["idf"], fit_idf(counts))
    logit = z @ a["coef"][0] + bag @ a["bag_coef"][0] + a["intercept"][0]
    np.testing.assert_allclose(p_bag, expit(logit), rtol=1e-9, atol=1e-12)

    dense.save(tmp_path / "dense")
    loaded = LogisticBaseline.load(tmp_path / "dense")
    assert "idf" not in loaded.arrays_
    np.testing.assert_array_equal(loaded.proba(inputs), dense.proba(inputs))


def test_lr_and_its_bag_import_no_torch():
    """lr fits and predicts with numpy, scipy and scikit-learn: `predict` and `export-embeddings` with lr never
    pay for importing torch."""
    import subprocess
    import sys

    code = ("import sys; import graphprof.models.bag, graphprof.models.baseline; "
            "from graphprof.models import MODELS; MODELS['lr']; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_lr_design_is_the_stacked_matrix_without_its_copies():
    import scipy.sparse as sp

    from graphprof.models.baseline import dense_beside_sparse

    rng = np.random.default_rng(0)
    for n, k, m in ((500, 7, 300), (1, 3, 5), (50, 4, 1)):
        z = rng.normal(size=(n, k))
        z[rng.random((n, k)) < 0.1] = 0.0  # csr_matrix(z) keeps no zero
        bag = sp.csr_matrix(sp.random(n, m, density=0.05, format="csr", random_state=1).log1p()
                            @ sp.diags(rng.random(m)))
        a, b = sp.hstack([sp.csr_matrix(z), bag], format="csr"), dense_beside_sparse(z, bag)
        assert a.shape == b.shape
        for name in ("indptr", "indices", "data"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_lr_past_its_search_sample_fits_the_chosen_c_on_every_training_user(shop, monkeypatch):
    """C is chosen on a sample of the training users; the chosen C is then fitted on all of them, started from
    the sample's coefficients: the optimum of the same objective as a fit from zero (to the solver's tolerance)."""
    from sklearn.linear_model import LogisticRegression

    from graphprof.models import baseline

    inputs, targets = shop
    target, parts = targets["age_band"]
    fits, real = [], LogisticRegression.fit

    def spy(self, x, y, *args, **kwargs):
        out = real(self, x, y, *args, **kwargs)
        fits.append((x.shape[0], self.C, self.warm_start, int(self.n_iter_.max())))
        return out

    monkeypatch.setattr(LogisticRegression, "fit", spy)
    monkeypatch.setattr(baseline, "SEARCH_MAX_ROWS", len(parts["train"]) // 2)
    sampled = baseline.LogisticBaseline(seed=0).fit(inputs, target.y, parts["train"], parts["val"], target.classes)
    grid = baseline.LogisticBaseline().params["c_grid"]
    assert [f[:3] for f in fits[:-1]] == [(len(parts["train"]) // 2, c, False) for c in grid]
    assert fits[-1][:3] == (len(parts["train"]), sampled.c_, True)
    monkeypatch.setattr(baseline, "SEARCH_MAX_ROWS", len(parts["train"]))  # no sample: a fit from zero on all
    cold = baseline.LogisticBaseline(seed=0, c_grid=(sampled.c_,)).fit(inputs, target.y, parts["train"],
                                                                       parts["val"], target.classes)
    assert fits[-1][:3] == (len(parts["train"]), sampled.c_, False)
    np.testing.assert_allclose(sampled.predict_proba(inputs).to_numpy(), cold.predict_proba(inputs).to_numpy(),
                               atol=5e-3)
