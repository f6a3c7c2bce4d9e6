"""Oracle entries for the margin losses (issue 4): hinges, PyTorch's margin losses, soft margins and
perceptrons.

Terms are written from the definitions in mpmath; kinks get the symmetric central difference of
``reference.row_grad`` (the average of the one-sided slopes), which is losskit's documented
convention. Regimes never put a row exactly on a kink *and* a tie at once (there the one-sided
averages of the two non-smooth pieces do not compose).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import mpmath
import numpy as np
from mpmath import mpf

from .. import reference as R
from ..catalog import Entry
from ..peers import jax_peer, keras_peer, torch_peer

ROWS = 8


def _zero() -> mpf:
    return mpf(0)


def _signs(t: list[mpf]) -> list[mpf]:
    """Keras's label rule on one row (the regimes keep each array all-0/1 or all-±1)."""
    if all(ti in (0, 1) for ti in t):
        return [2 * ti - 1 for ti in t]
    return t


def _check_signs(t: list[mpf]) -> None:
    for ti in t:
        if ti not in (-1, 1):
            raise R.DomainError("labels must be -1 or 1")


# ------------------------------------------------------------------------------------------- terms


def _squared_hinge_terms(t: Any, f: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``max(0, 1 - t f)^2`` per element (Keras's 0/1 -> -1/1 rule)."""
    return [max(_zero(), 1 - ti * fi) ** 2 for ti, fi in zip(_signs(t), f, strict=True)]


def _categorical_hinge_terms(t: Any, f: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``max(0, 1 + max_j (1 - t_j) f_j - sum_j t_j f_j)`` (Keras's formula), one term."""
    neg = max((1 - tj) * fj for tj, fj in zip(t, f, strict=True))
    pos = mpmath.fsum(tj * fj for tj, fj in zip(t, f, strict=True))
    return [max(_zero(), 1 + neg - pos)]


def _multiclass_hinge_terms(y: Any, s: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """Crammer-Singer: ``max_j (s_j + 1 - [j = y]) - s_y``, one term."""
    return [max(sj + (0 if j == y else 1) for j, sj in enumerate(s)) - s[y]]


def _multi_margin_terms(y: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """PyTorch: ``w_y max(0, margin - x_y + x_j)^p`` for j != y, and 0 for j = y (mean over n)."""
    weight = opts.get("weight")
    w = mpf(1) if weight is None else (weight[y] if isinstance(weight, list) else mpf(weight))
    margin, p = mpf(opts["margin"]), int(opts["p"])
    return [_zero() if j == y else w * max(_zero(), margin - x[y] + xj) ** p
            for j, xj in enumerate(x)]


def _multilabel_margin_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """PyTorch: ``(1/n) sum_{listed k} sum_{i not listed} max(0, 1 - (x[y_k] - x_i))``, one term."""
    listed: list[int] = []
    for v in t:
        if v < 0:
            break
        listed.append(int(v))
    targets = set(listed)
    total = mpmath.fsum(max(_zero(), 1 - (x[k] - x[i]))
                        for k in listed for i in range(len(x)) if i not in targets)
    return [total / len(x)]


def _soft_margin_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``log(1 + exp(-t x))`` per element."""
    _check_signs(t)
    return [mpmath.log1p(mpmath.exp(-ti * xi)) for ti, xi in zip(t, x, strict=True)]


def _multilabel_soft_margin_terms(t: Any, x: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``w_i (y_i log(1 + e^-x_i) + (1 - y_i) log(1 + e^x_i))`` per element (mean over n)."""
    weight = opts.get("weight")
    out = []
    for i, (yi, xi) in enumerate(zip(t, x, strict=True)):
        w = mpf(1) if weight is None else (weight[i] if isinstance(weight, list) else mpf(weight))
        out.append(w * (R._xlog1pexp(yi, -xi) + R._xlog1pexp(1 - yi, xi)))
    return out


def _perceptron_terms(t: Any, f: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``max(0, -t f)`` per element."""
    _check_signs(t)
    return [max(_zero(), -ti * fi) for ti, fi in zip(t, f, strict=True)]


def _multiclass_perceptron_terms(y: Any, s: list[mpf], opts: Mapping[str, Any]) -> list[mpf]:
    """``max_j s_j - s_y``, one term."""
    return [max(s) - s[y]]


# ----------------------------------------------------------------------------------------- regimes


def _cast(dtype: Any, **arrays: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v if v.dtype.kind in "iu" else v.astype(dtype)) for k, v in arrays.items()}


def _ulps(dtype: Any, x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """``x`` moved by ``k`` ulps (in ``dtype``)."""
    out = np.array(x, dtype=dtype, ndmin=1)
    k = np.broadcast_to(k, out.shape)
    step = np.where(k >= 0, np.inf, -np.inf).astype(dtype)
    for idx in np.ndindex(out.shape):
        for _ in range(abs(int(k[idx]))):
            out[idx] = np.nextafter(out[idx], step[idx])
    return out if np.ndim(x) else out[0]


def _signs_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    t = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    f = rng.normal(scale=2.0, size=(ROWS, 4))
    return _cast(dtype, y_true=t, y_pred=f)


def _signs_on_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """t f = 1 exactly, or a few ulps either side of it, and t f = 0."""
    d = _signs_near_margin(rng, dtype)
    d["y_pred"][0] = d["y_true"][0]  # exactly on the margin
    return d


def _signs_near_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """t f a few ulps either side of 1 (never on it: there a central difference of a smooth
    max(0, m)^2 is off by h/2, not 0), and t f = 0."""
    t = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    k = rng.choice([-4, -3, -2, -1, 1, 2, 3, 4], size=(ROWS, 4))
    f = t * _ulps(dtype, np.ones((ROWS, 4)), k)
    f[:, 0] = 0.0
    return _cast(dtype, y_true=t, y_pred=f)


def _signs_huge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    top = 30 if np.dtype(dtype) == np.float32 else 200
    t = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    f = rng.choice([-1.0, 1.0], size=(ROWS, 4)) * 10.0 ** rng.uniform(1, top, size=(ROWS, 4))
    return _cast(dtype, y_true=t, y_pred=f)


def _signs_tiny(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    low = -40 if np.dtype(dtype) == np.float32 else -310
    t = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    f = rng.choice([-1.0, 1.0], size=(ROWS, 4)) * 10.0 ** rng.uniform(low, -3, size=(ROWS, 4))
    return _cast(dtype, y_true=t, y_pred=f)


def _binary_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    t = rng.integers(0, 2, size=(ROWS, 4)).astype(float)
    f = rng.normal(scale=2.0, size=(ROWS, 4))
    return _cast(dtype, y_true=t, y_pred=f)


def _logits_wide(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Scores from -1000 to 1000 and tiny ones: softplus's far tails and its centre."""
    t = rng.choice([-1.0, 1.0], size=(ROWS, 4))
    f = rng.choice([-1.0, 1.0], size=(ROWS, 4)) * 10.0 ** rng.uniform(-8, 3, size=(ROWS, 4))
    f[0] = [1000.0, -1000.0, 40.0, -40.0]
    return _cast(dtype, y_true=t, y_pred=f)


def _binary_logits_wide(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    d = _logits_wide(rng, dtype)
    return {"y_true": (d["y_true"] > 0).astype(dtype), "y_pred": d["y_pred"]}


def _onehot(rng: np.random.Generator, rows: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.integers(0, n, size=rows)
    return labels, np.eye(n)[labels]


def _onehot_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    _, t = _onehot(rng, ROWS, 4)
    return _cast(dtype, y_true=t, y_pred=rng.normal(scale=1.0, size=(ROWS, 4)))


def _onehot_near_margin(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """The label's score 1 above the best other (a few ulps either way), and negative others."""
    labels, t = _onehot(rng, ROWS, 4)
    f = rng.normal(size=(ROWS, 4)).astype(dtype)
    for r in range(ROWS):
        others = [j for j in range(4) if j != labels[r]]
        if r % 4 == 3:
            f[r, others] = -np.abs(f[r, others])  # the label's own 0 is the maximum
        best = max(f[r, j] for j in others)
        best = max(best, 0.0)
        f[r, labels[r]] = _ulps(dtype, np.asarray(dtype(best) + dtype(1.0)),
                                np.asarray(rng.integers(-3, 4) if r else 0))
    return _cast(dtype, y_true=t, y_pred=f)


def _onehot_huge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    top = 30 if np.dtype(dtype) == np.float32 else 200
    _, t = _onehot(rng, ROWS, 4)
    f = rng.choice([-1.0, 1.0], size=(ROWS, 4)) * 10.0 ** rng.uniform(-3, top, size=(ROWS, 4))
    return _cast(dtype, y_true=t, y_pred=f)


def _onehot_ties(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """Two other classes tied for the maximum (inside the margin)."""
    labels, t = _onehot(rng, ROWS, 4)
    f = rng.normal(size=(ROWS, 4))
    for r in range(ROWS):
        a, b = [j for j in range(4) if j != labels[r]][:2]
        f[r, a] = f[r, b] = abs(f[r, a]) + 0.25
        f[r, labels[r]] = f[r, a] - 0.5
    return _cast(dtype, y_true=t, y_pred=f)


def _labels_of(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The same arrays with one-hot targets as integer labels."""
    return {"y_true": np.argmax(d["y_true"], axis=-1), "y_pred": d["y_pred"]}


def _index_regimes(single_class: bool = True) -> dict[str, Any]:
    regimes = {"generic": lambda rng, dt: _labels_of(_onehot_generic(rng, dt)),
            "near_margin": lambda rng, dt: _labels_of(_onehot_near_margin(rng, dt)),
            "huge": lambda rng, dt: _labels_of(_onehot_huge(rng, dt)),
            "ties": lambda rng, dt: _labels_of(_onehot_ties(rng, dt)),
            "single_class": lambda rng, dt: _cast(dt, y_true=np.zeros(4, dtype=np.int64),
                                                  y_pred=rng.normal(size=(4, 1)))}
    if not single_class:
        del regimes["single_class"]
    return regimes


def _index_ties_at_top(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """The label tied with another class for the best score, and two others tied above the label."""
    labels = rng.integers(0, 4, size=ROWS)
    f = rng.normal(size=(ROWS, 4))
    for r in range(ROWS):
        a, b = [j for j in range(4) if j != labels[r]][:2]
        if r % 2:
            f[r, a] = f[r, labels[r]] = np.max(np.abs(f[r])) + 0.5
        else:
            f[r, a] = f[r, b] = np.max(np.abs(f[r])) + 0.5
    return _cast(dtype, y_true=labels, y_pred=f)


def _multi_margin_kinks(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """x_j - x_y = -margin exactly (kink) or within ulps of it; the label keeps its margin to others."""
    labels = rng.integers(0, 4, size=ROWS)
    f = rng.normal(size=(ROWS, 4)).astype(dtype)
    for r in range(ROWS):
        j = (labels[r] + 1) % 4
        f[r, labels[r]] = dtype(0.75)
        f[r, j] = _ulps(dtype, np.asarray(dtype(-0.25)), np.asarray(0 if r < 2 else rng.integers(-3, 4)))
    return _cast(dtype, y_true=labels, y_pred=f)


def _multi_margin_kinks_half(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """As above for margin 0.5."""
    d = _multi_margin_kinks(rng, dtype)
    f = d["y_pred"].copy()
    for r, y in enumerate(d["y_true"]):
        j = (y + 1) % 4
        f[r, j] = _ulps(dtype, np.asarray(dtype(0.25)), np.asarray(0 if r < 2 else rng.integers(-3, 4)))
    return {"y_true": d["y_true"], "y_pred": f}


def _index_lists(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    out = -np.ones((rows, n))
    for r in range(rows):
        m = rng.integers(1, n)
        out[r, :m] = rng.permutation(n)[:m]
    return out


def _lists_generic(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    t = _index_lists(rng, ROWS, 5)
    t[0] = [-1, -1, -1, -1, -1]  # no target: loss 0
    t[1] = [2, -1, 4, 0, 1]  # entries after the first -1 are ignored
    return _cast(dtype, y_true=t.astype(np.int64), y_pred=rng.normal(size=(ROWS, 5)))


def _lists_kinks(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    """x_target - x_other = 1 exactly or within ulps of it."""
    t = _index_lists(rng, ROWS, 4)
    f = rng.normal(size=(ROWS, 4)).astype(dtype)
    for r in range(ROWS):
        k = int(t[r, 0])
        f[r, k] = 0.5
        for i in range(4):
            if i not in t[r]:
                f[r, i] = _ulps(dtype, np.asarray(dtype(-0.5)),
                                np.asarray(0 if r < 2 else rng.integers(-3, 4)))
                break
    return _cast(dtype, y_true=t.astype(np.int64), y_pred=f)


def _lists_huge(rng: np.random.Generator, dtype: Any) -> dict[str, np.ndarray]:
    top = 30 if np.dtype(dtype) == np.float32 else 200
    t = _index_lists(rng, ROWS, 4)
    f = rng.choice([-1.0, 1.0], size=(ROWS, 4)) * 10.0 ** rng.uniform(-3, top, size=(ROWS, 4))
    return _cast(dtype, y_true=t.astype(np.int64), y_pred=f)


# ------------------------------------------------------------------------------------------- peers


def _keras(name: str) -> Any:
    def fn(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
        import keras

        return getattr(keras.losses, name)(a["y_true"], p)

    return keras_peer(fn)


def _optax(name: str, mean: bool = False) -> Any:
    def fn(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
        import optax

        out = getattr(optax.losses, name)(p, a["y_true"])
        return out.mean(-1) if mean else out

    return jax_peer(fn)


def _torch_weight(o: Mapping[str, Any], p: Any) -> Any:
    import torch

    w = o.get("weight")
    return None if w is None else torch.tensor(w, dtype=p.dtype)


def _torch_multi_margin(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.multi_margin_loss(p, a["y_true"].long(), p=o["p"], margin=o["margin"],
                               weight=_torch_weight(o, p), reduction="none")


def _torch_multilabel_margin(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.multilabel_margin_loss(p, a["y_true"].long(), reduction="none")


def _torch_soft_margin(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.soft_margin_loss(p, a["y_true"], reduction="none").mean(-1)


def _torch_multilabel_soft_margin(p: Any, a: dict[str, Any], o: Mapping[str, Any]) -> Any:
    import torch.nn.functional as F

    return F.multilabel_soft_margin_loss(p, a["y_true"], weight=_torch_weight(o, p),
                                         reduction="none")


# ----------------------------------------------------------------------------------------- entries

SIGN_REGIMES = {"generic": _signs_generic, "margin": _signs_on_margin, "huge": _signs_huge,
                "tiny": _signs_tiny}

ENTRIES = [
    Entry("squared_hinge", R.Spec(_squared_hinge_terms, mean=True, separable=True),
          regimes={**SIGN_REGIMES, "margin": _signs_near_margin, "binary_labels": _binary_generic},
          peers={"keras": _keras("squared_hinge")},
          peer_names={"keras": "keras.losses.SquaredHinge"},
          peer_regimes=("generic", "margin", "binary_labels")),
    Entry("categorical_hinge", R.Spec(_categorical_hinge_terms, mean=False, separable=False),
          regimes={"generic": _onehot_generic, "near_margin": _onehot_near_margin,
                   "huge": _onehot_huge, "ties": _onehot_ties},
          peers={"keras": _keras("categorical_hinge")},
          peer_names={"keras": "keras.losses.CategoricalHinge"}),
    Entry("multiclass_hinge",
          R.Spec(_multiclass_hinge_terms, mean=False, separable=False, integer_target=True),
          regimes={**_index_regimes(), "label_ties": _index_ties_at_top},
          peers={"optax": _optax("multiclass_hinge_loss")},
          peer_names={"optax": "optax.losses.multiclass_hinge_loss"},
          peer_regimes=("generic", "ties")),
    *[Entry("multi_margin",
            R.Spec(_multi_margin_terms, mean=True, separable=False, integer_target=True),
            regimes={**_index_regimes(single_class=opts["weight"] is None),
                     "kinks": _multi_margin_kinks if opts["margin"] == 1.0 else _multi_margin_kinks_half},
            options=opts,
            peers={"torch": torch_peer(_torch_multi_margin)},
            peer_names={"torch": "torch.nn.MultiMarginLoss"},
            peer_regimes=("generic", "huge", "ties"))
      for opts in ({"p": 1, "margin": 1.0, "weight": None}, {"p": 2, "margin": 1.0, "weight": None},
                   {"p": 1, "margin": 0.5, "weight": (0.5, 2.0, 1.0, 0.0)},
                   {"p": 2, "margin": 0.5, "weight": (0.5, 2.0, 1.0, 0.0)})],
    Entry("multilabel_margin", R.Spec(_multilabel_margin_terms, mean=False, separable=False),
          regimes={"generic": _lists_generic, "kinks": _lists_kinks, "huge": _lists_huge},
          peers={"torch": torch_peer(_torch_multilabel_margin)},
          peer_names={"torch": "torch.nn.MultiLabelMarginLoss"},
          peer_regimes=("generic", "huge")),
    Entry("soft_margin", R.Spec(_soft_margin_terms, mean=True, separable=True),
          regimes={**SIGN_REGIMES, "logits_wide": _logits_wide},
          peers={"torch": torch_peer(_torch_soft_margin)},
          peer_names={"torch": "torch.nn.SoftMarginLoss"}),
    *[Entry("multilabel_soft_margin",
            R.Spec(_multilabel_soft_margin_terms, mean=True, separable=True),
            regimes={"generic": _binary_generic, "logits_wide": _binary_logits_wide,
                     "huge": lambda rng, dt: {**_binary_generic(rng, dt),
                                              "y_pred": _signs_huge(rng, dt)["y_pred"]},
                     "tiny": lambda rng, dt: {**_binary_generic(rng, dt),
                                              "y_pred": _signs_tiny(rng, dt)["y_pred"]}},
            options=opts,
            peers={"torch": torch_peer(_torch_multilabel_soft_margin)},
            peer_names={"torch": "torch.nn.MultiLabelSoftMarginLoss"},
            peer_regimes=("generic",))
      for opts in ({"weight": None}, {"weight": (0.5, 2.0, 0.0, 3.0)})],
    Entry("perceptron", R.Spec(_perceptron_terms, mean=True, separable=True),
          regimes={**SIGN_REGIMES,
                   "zero": lambda rng, dt: {**_signs_generic(rng, dt),
                                            "y_pred": np.zeros((ROWS, 4), dtype=dt)}},
          peers={"optax": _optax("perceptron_loss", mean=True)},
          peer_names={"optax": "optax.losses.perceptron_loss"},
          peer_regimes=("generic", "zero")),
    Entry("multiclass_perceptron",
          R.Spec(_multiclass_perceptron_terms, mean=False, separable=False, integer_target=True),
          regimes={**_index_regimes(), "label_ties": _index_ties_at_top},
          peers={"optax": _optax("multiclass_perceptron_loss")},
          peer_names={"optax": "optax.losses.multiclass_perceptron_loss"},
          peer_regimes=("generic", "ties", "label_ties")),
]
