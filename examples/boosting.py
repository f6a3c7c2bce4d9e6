"""Poisson regression with losskit's boosting objective in XGBoost, LightGBM and CatBoost.

Each library trains twice on ``load_diabetes`` (the targets are positive and count-like): once with
its built-in Poisson objective, once with ``losskit.boosting.get("poisson")`` as a custom objective,
following the recipe of ``docs/boosting.md``: start from ``init_score`` (the log of the mean), map
the raw scores back with ``predict``. CatBoost's and LightGBM's (with ``poisson_max_delta_step`` made
negligible) built-in objectives have the same gradient and hessian, and the test deviances agree;
XGBoost's ``count:poisson`` damps its hessian to ``exp(r + 0.7)``, so its model differs a little.

    python examples/boosting.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.metrics import mean_poisson_deviance
from sklearn.model_selection import train_test_split

from losskit import boosting


def main(rounds: int = 50) -> dict[str, tuple[float, float]]:
    X, y = load_diabetes(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.3, random_state=0)
    loss = boosting.get("poisson")
    init = loss.init_score(y_tr)  # log(mean(y)): where the built-in objectives start
    results: dict[str, tuple[float, float]] = {}

    import xgboost as xgb

    kw = {"n_estimators": rounds, "max_depth": 3, "learning_rate": 0.1, "n_jobs": 1}
    builtin = xgb.XGBRegressor(objective="count:poisson", **kw).fit(X_tr, y_tr)
    custom = xgb.XGBRegressor(objective=loss.as_xgboost_objective(), base_score=loss.base_score(y_tr), **kw)
    custom.fit(X_tr, y_tr)
    results["xgboost"] = (mean_poisson_deviance(y_te, builtin.predict(X_te)),
                          mean_poisson_deviance(y_te, loss.predict(custom, X_te)))

    import lightgbm as lgb

    kw = {"n_estimators": rounds, "num_leaves": 8, "learning_rate": 0.1, "n_jobs": 1, "verbose": -1}
    builtin = lgb.LGBMRegressor(objective="poisson", poisson_max_delta_step=1e-12, **kw).fit(X_tr, y_tr)
    custom = lgb.LGBMRegressor(objective=loss.as_lightgbm_objective(), **kw)
    custom.fit(X_tr, y_tr, init_score=np.full(y_tr.size, init))
    results["lightgbm"] = (mean_poisson_deviance(y_te, builtin.predict(X_te)),
                           mean_poisson_deviance(y_te, loss.predict(custom, X_te, init_score=init)))

    try:
        import catboost
    except ImportError:  # optional
        catboost = None
    if catboost is not None:
        kw = {"iterations": rounds, "depth": 3, "learning_rate": 0.1, "verbose": 0, "thread_count": 1,
              "allow_writing_files": False}
        pool = catboost.Pool(X_tr, y_tr, baseline=np.full(y_tr.size, init))
        builtin = catboost.CatBoostRegressor(loss_function="Poisson", **kw).fit(pool)
        custom = catboost.CatBoostRegressor(loss_function=loss.as_catboost_objective(), eval_metric="Poisson",
                                            **kw).fit(pool)
        raw = builtin.predict(X_te, prediction_type="RawFormulaVal") + init
        results["catboost"] = (mean_poisson_deviance(y_te, np.exp(raw)),
                               mean_poisson_deviance(y_te, loss.predict(custom, X_te, init_score=init)))

    for lib, (b, c) in results.items():
        print(f"{lib:9s} test Poisson deviance: built-in {b:.3f}, losskit objective {c:.3f}")
    return results


if __name__ == "__main__":
    main()
