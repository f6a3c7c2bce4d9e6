"""losskit.boosting objectives inside the real XGBoost, LightGBM and CatBoost (issue 10, item 4).

Small real training runs (a few hundred rows, 20 rounds, one thread): every API of each library
trains with a losskit objective, including ``sample_weight`` and multiclass; where the library has
the same objective built in (same gradient and hessian), the predictions agree with the built-in
model's to a stated tolerance; and the documented recipe (``init_score`` / ``base_score``,
``predict``) reaches the built-in objective's test quality on scikit-learn data sets.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.metrics import log_loss, mean_poisson_deviance

from losskit import boosting as B

xgb = pytest.importorskip("xgboost")
lgb = pytest.importorskip("lightgbm")
catboost = pytest.importorskip("catboost")

ROUNDS = 20
XGB = {"n_estimators": ROUNDS, "max_depth": 3, "learning_rate": 0.3, "n_jobs": 1, "tree_method": "hist"}
LGB = {"n_estimators": ROUNDS, "num_leaves": 8, "learning_rate": 0.3, "n_jobs": 1, "verbose": -1,
       "min_child_samples": 5}
# LightGBM's "poisson" hessian is exp(r + poisson_max_delta_step) (which must be > 0): 1e-12 makes it
# the Poisson hessian to float32 rounding
LGB_PARAMS = {"num_leaves": 8, "learning_rate": 0.3, "num_threads": 1, "verbose": -1,
              "min_data_in_leaf": 5, "poisson_max_delta_step": 1e-12}


@pytest.fixture(scope="module")
def diabetes():
    X, y = load_diabetes(return_X_y=True)
    rng = np.random.default_rng(0)
    idx = rng.permutation(y.size)
    tr, te = idx[:300], idx[300:]
    w = rng.uniform(0.5, 2.0, 300)
    return X[tr], y[tr], w, X[te], y[te]


@pytest.fixture(scope="module")
def cancer():
    X, y = load_breast_cancer(return_X_y=True)
    rng = np.random.default_rng(1)
    idx = rng.permutation(y.size)
    return X[idx[:300]], y[idx[:300]].astype(float), X[idx[300:]], y[idx[300:]].astype(float)


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(2)
    idx = rng.permutation(y.size)
    return X[idx[:100]], y[idx[:100]], X[idx[100:]], y[idx[100:]]


# ------------------------------------------------------------------ same objective as a built-in


@pytest.mark.parametrize(("name", "opts", "builtin"), [
    ("squared_error", {}, "reg:squarederror"),
    ("gamma", {}, "reg:gamma"),
    ("tweedie", {"power": 1.5}, "reg:tweedie"),
])
def test_xgboost_native_matches_builtin(diabetes, name, opts, builtin):
    """``xgb.train(params, dtrain, obj=...)`` with weights: the built-in objective has the same gradient
    and hessian, so from the same start (``base_score``: the built-in reads it through its link, the
    custom objective as a raw score) the trees and predictions are the same."""
    X, y, w, Xt, _ = diabetes
    loss = B.get(name, **opts)
    init = loss.init_score(y, w)
    params = {"max_depth": 3, "eta": 0.3, "nthread": 1, "tree_method": "hist"}
    dtrain = xgb.DMatrix(X, label=y, weight=w)
    extra = {"tweedie_variance_power": opts["power"]} if "power" in opts else {}
    ref = xgb.train({**params, **extra, "objective": builtin, "base_score": float(loss.inverse_link(init))},
                    dtrain, ROUNDS)
    mine = xgb.train({**params, "base_score": init}, dtrain, ROUNDS, obj=loss.as_xgboost_objective())
    expected = ref.predict(xgb.DMatrix(Xt))  # the built-in applies its inverse link
    got = loss.predict(mine, Xt)
    np.testing.assert_allclose(got, expected, rtol=2e-5)


def test_xgboost_sklearn_regressor_with_sample_weight(diabetes):
    X, y, w, Xt, _ = diabetes
    loss = B.get("gamma")
    mine = xgb.XGBRegressor(objective=loss.as_xgboost_objective(), base_score=loss.base_score(y, w), **XGB)
    mine.fit(X, y, sample_weight=w)
    ref = xgb.XGBRegressor(objective="reg:gamma", base_score=float(loss.inverse_link(loss.init_score(y, w))),
                           **XGB).fit(X, y, sample_weight=w)
    np.testing.assert_allclose(loss.predict(mine, Xt), ref.predict(Xt), rtol=2e-5)
    # unweighted, the objective is called with two arguments
    xgb.XGBRegressor(objective=loss.as_xgboost_objective(), base_score=loss.base_score(y), **XGB).fit(X, y)


def test_xgboost_classifier_base_score_is_a_probability(cancer):
    """A binary ``XGBClassifier`` reads ``base_score`` as a probability: ``base_score(...,
    estimator=clf)`` gives it, and ``predict_proba`` then works as with the built-in. Same
    gradient as ``binary:logistic``; its hessian is floored at 1e-16, never reached here."""
    X, y, Xt, yt = cancer
    loss = B.get("binomial")
    clf = xgb.XGBClassifier(objective=loss.as_xgboost_objective(), **XGB)
    clf.set_params(base_score=loss.base_score(y, estimator=clf))
    assert 0 < clf.get_params()["base_score"] < 1
    clf.fit(X, y, sample_weight=np.ones_like(y))
    ref = xgb.XGBClassifier(objective="binary:logistic", base_score=float(np.mean(y)), **XGB).fit(X, y)
    p = clf.predict_proba(Xt)[:, 1]
    np.testing.assert_allclose(p, ref.predict_proba(Xt)[:, 1], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss.predict(clf, Xt), p, rtol=1e-6)
    assert log_loss(yt, p) < 0.2


def test_xgboost_multiclass(iris):
    X, y, Xt, yt = iris
    loss = B.get("multinomial")
    clf = xgb.XGBClassifier(objective=loss.as_xgboost_objective(), base_score=loss.base_score(y), **XGB)
    clf.fit(X, y, sample_weight=np.full(y.size, 2.0))
    p = loss.predict(clf, Xt)
    assert p.shape == (Xt.shape[0], 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    ref = xgb.XGBClassifier(objective="multi:softprob", **XGB).fit(X, y)
    # XGBoost's softprob hessian is 2 p (1 - p), twice the exact diagonal: not the same trees, the
    # same quality
    assert log_loss(yt, p, labels=[0, 1, 2]) <= log_loss(yt, ref.predict_proba(Xt), labels=[0, 1, 2]) + 0.05


@pytest.mark.parametrize(("name", "opts", "builtin"), [
    ("squared_error", {}, "regression"),
    ("poisson", {}, "poisson"),
    ("gamma", {}, "gamma"),
    ("tweedie", {"power": 1.3}, "tweedie"),
])
def test_lightgbm_native_matches_builtin(diabetes, name, opts, builtin):
    """``lightgbm.train`` with ``params["objective"] = loss.as_lightgbm_objective()`` (this raised
    a TypeError before) and weights; ``init_score`` is the built-in's ``boost_from_average`` start."""
    X, y, w, Xt, _ = diabetes
    loss = B.get(name, **opts)
    init = loss.init_score(y, w)
    extra = {"tweedie_variance_power": opts["power"]} if "power" in opts else {}
    ref = lgb.train({**LGB_PARAMS, **extra, "objective": builtin}, lgb.Dataset(X, y, weight=w), ROUNDS)
    mine = lgb.train({**LGB_PARAMS, "objective": loss.as_lightgbm_objective()},
                     lgb.Dataset(X, y, weight=w, init_score=np.full(y.size, init)), ROUNDS)
    np.testing.assert_allclose(loss.predict(mine, Xt, init_score=init), ref.predict(Xt), rtol=1e-5)


def test_lightgbm_sklearn_regressor_with_sample_weight(diabetes):
    X, y, w, Xt, _ = diabetes
    loss = B.get("poisson")
    init = loss.init_score(y, w)
    mine = lgb.LGBMRegressor(objective=loss.as_lightgbm_objective(), **LGB)
    mine.fit(X, y, sample_weight=w, init_score=np.full(y.size, init))
    ref = lgb.LGBMRegressor(objective="poisson", poisson_max_delta_step=1e-12, **LGB)
    ref.fit(X, y, sample_weight=w)
    np.testing.assert_allclose(loss.predict(mine, Xt, init_score=init), ref.predict(Xt), rtol=1e-5)


def test_lightgbm_multiclass_layout(iris):
    """LightGBM 4 passes ``(n, K)`` raw scores to the scikit-learn API objective; ``init_score``
    ``(n, K)``, and ``predict`` adds it back."""
    X, y, Xt, yt = iris
    loss = B.get("multinomial")
    init = loss.init_score(y)
    clf = lgb.LGBMClassifier(objective=loss.as_lightgbm_objective(), **LGB)
    clf.fit(X, y, init_score=np.tile(init, (y.size, 1)))
    p = loss.predict(clf, Xt, init_score=init)
    assert p.shape == (Xt.shape[0], 3)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    # LightGBM's "multiclass" hessian is K/(K-1) p (1 - p), a damped step: not the same trees; the
    # same classification quality (the undamped model is more confident: log loss 0.49 vs 0.37 here)
    ref = lgb.LGBMClassifier(objective="multiclass", **LGB).fit(X, y)
    assert np.mean(p.argmax(axis=1) == yt) >= np.mean(ref.predict(Xt) == yt) - 0.02
    assert log_loss(yt, p, labels=[0, 1, 2]) < 0.6


# ----------------------------------------------------------------------------------- CatBoost


def test_catboost_regressor_matches_builtin(diabetes):
    """CatBoost maximises: the objective returns the negated derivatives; with the same baseline,
    the predictions are the built-in ``Poisson``'s."""
    X, y, w, Xt, _ = diabetes
    loss = B.get("poisson")
    init = loss.init_score(y, w)
    pool = catboost.Pool(X, y, weight=w, baseline=np.full(y.size, init))
    kw = {"iterations": ROUNDS, "depth": 3, "learning_rate": 0.3, "verbose": 0, "thread_count": 1,
          "allow_writing_files": False,
          "random_seed": 0}
    mine = catboost.CatBoostRegressor(loss_function=loss.as_catboost_objective(), eval_metric="Poisson", **kw)
    mine.fit(pool)
    ref = catboost.CatBoostRegressor(loss_function="Poisson", **kw).fit(pool)
    expected = np.exp(ref.predict(Xt, prediction_type="RawFormulaVal") + init)
    np.testing.assert_allclose(loss.predict(mine, Xt, init_score=init), expected, rtol=1e-6)


def test_catboost_multiclass(iris):
    X, y, Xt, yt = iris
    loss = B.get("multinomial")
    init = loss.init_score(y)
    clf = catboost.CatBoostClassifier(loss_function=loss.as_catboost_objective(), eval_metric="MultiClass",
                                      iterations=ROUNDS, depth=3, learning_rate=0.3, verbose=0,
                                      allow_writing_files=False,
                                      thread_count=1, random_seed=0)
    clf.fit(catboost.Pool(X, y, baseline=np.tile(init, (y.size, 1))))
    p = loss.predict(clf, Xt, init_score=init)
    assert p.shape == (Xt.shape[0], 3)
    ref = catboost.CatBoostClassifier(loss_function="MultiClass", iterations=ROUNDS, depth=3,
                                      learning_rate=0.3, allow_writing_files=False,
                                      verbose=0, thread_count=1, random_seed=0).fit(X, y)
    assert np.mean(p.argmax(axis=1) == yt) >= np.mean(ref.predict(Xt).ravel() == yt) - 0.02
    assert log_loss(yt, p, labels=[0, 1, 2]) <= log_loss(yt, ref.predict_proba(Xt), labels=[0, 1, 2]) + 0.05


# ------------------------------------------------------------------------ the documented recipe


def test_recipe_reaches_builtin_quality_on_diabetes(diabetes):
    """Poisson on ``load_diabetes`` with ``LGBMRegressor``: with the recipe's ``init_score`` the
    custom objective's test deviance is the built-in's; without it (a start at raw score 0, i.e.
    a mean of 1 for targets near 150) the Newton steps overshoot (measured: 2.9e37 against 21.3)."""
    X, y, _w, Xt, yt = diabetes
    loss = B.get("poisson")
    init = loss.init_score(y)
    ref = lgb.LGBMRegressor(objective="poisson", **LGB).fit(X, y)
    builtin = mean_poisson_deviance(yt, ref.predict(Xt))
    mine = lgb.LGBMRegressor(objective=loss.as_lightgbm_objective(), **LGB)
    mine.fit(X, y, init_score=np.full(y.size, init))
    recipe = mean_poisson_deviance(yt, loss.predict(mine, Xt, init_score=init))
    bare = lgb.LGBMRegressor(objective=loss.as_lightgbm_objective(), **LGB).fit(X, y)
    no_init = mean_poisson_deviance(yt, loss.predict(bare, Xt))
    assert recipe <= builtin * 1.05
    assert no_init > 2 * builtin


def test_readme_example_xgboost():
    """The README's "use it from XGBoost" example, verbatim."""
    import xgboost as xgb
    from sklearn.datasets import load_diabetes

    from losskit import boosting

    X, y = load_diabetes(return_X_y=True)
    loss = boosting.get("poisson")
    model = xgb.XGBRegressor(objective=loss.as_xgboost_objective(), base_score=loss.base_score(y),
                             n_estimators=20, n_jobs=1).fit(X, y)
    mean = loss.predict(model, X)  # exp(raw score): the predicted counts
    assert mean.shape == y.shape
    assert mean_poisson_deviance(y, mean) < mean_poisson_deviance(y, np.full(y.size, y.mean()))


# ------------------------------------------------------------------------------------- misuse


def test_misuse_is_refused_with_a_clear_message(cancer, iris):
    X, y, _, _ = cancer
    Xi, yi, _, _ = iris
    with pytest.raises(ValueError, match="single-output objective, but the model gives 3 raw scores"):
        xgb.XGBClassifier(objective=B.get("binomial").as_xgboost_objective(), **XGB).fit(Xi, yi)
    with pytest.raises(ValueError, match="needs one raw score per class"):
        lgb.train({**LGB_PARAMS, "objective": B.get("multinomial").as_lightgbm_objective()},
                  lgb.Dataset(X, y), 2)
    with pytest.raises(ValueError, match="y_true for poisson_loss must be non-negative"):
        lgb.train({**LGB_PARAMS, "objective": B.get("poisson").as_lightgbm_objective()},
                  lgb.Dataset(X, y - 1.0), 2)
    with pytest.raises(ValueError, match="binary XGBClassifier reads base_score through the logit"):
        B.get("poisson").base_score(y, estimator=xgb.XGBClassifier())
    with pytest.raises(ValueError, match="no finite best constant"):
        B.get("binomial").init_score(np.zeros(5))
    with pytest.raises(TypeError, match="must be an XGBoost, LightGBM or CatBoost model"):
        B.get("poisson").predict(object(), X)
    with pytest.raises(TypeError, match="multiclass: CatBoost calls calc_ders_multi"):
        B.get("multinomial").as_catboost_objective().calc_ders_range([0.0], [1.0], None)


def test_example_program():
    """``examples/boosting.py`` runs, and where the built-in objective is the same (LightGBM with a
    negligible ``poisson_max_delta_step``, CatBoost) the deviances agree."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "examples" / "boosting.py"
    spec = importlib.util.spec_from_file_location("boosting_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    results = module.main(rounds=15)
    for lib in ("lightgbm", "catboost"):
        builtin, custom = results[lib]
        assert abs(custom - builtin) <= 1e-4 * builtin, (lib, builtin, custom)
    builtin, custom = results["xgboost"]
    assert custom <= 1.2 * builtin
