"""Classification catalog losses: what the generic suites do not cover.

* soft targets: a gradient element of a soft target is a difference of two terms that cancels near
  its zero; there it is exact to 8 ulp of the larger term (the core cross-entropies' documented
  soft-target exception), measured against the mpmath oracle of the catalog entries;
* peer parity on soft targets (the catalog entries with soft targets have no peers);
* invariants: gamma = 0 focal is the cross-entropy, epsilon = 0 Poly-1 is the cross-entropy,
  q = 1 generalized cross-entropy is 1 - p_k;
* NLL: PyTorch's weighted mean through ``mean_with_sample_weight``, ``ignore_index``, errors.
"""

from __future__ import annotations

from typing import Any

import mpmath
import numpy as np
import pytest
from mpmath import mpf
from oracle import reference as R
from oracle.families import classification as fam

import losskit

ROWS, K = 12, 5


def soft_rows(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    t = rng.dirichlet(np.ones(K), ROWS)
    x = rng.normal(scale=3.0, size=(ROWS, K))
    return t, x


def mp_sigmoid(z: mpf) -> mpf:
    return 1 / (1 + mpmath.exp(-z))


# --------------------------------------------------------------------------- soft targets


def binary_focal_scale(t: np.ndarray, z: np.ndarray, gamma: float) -> np.ndarray:
    """|the two gradient terms| of w u^g (g (1-2t) h b + s - t) / n, summed (by hand)."""
    out = np.empty(z.shape, dtype=object)
    n = z.shape[-1]
    with mpmath.workdps(40):
        for idx in np.ndindex(z.shape):
            ti, zi = mpf(float(t[idx])), mpf(float(z[idx]))
            s, sc = mp_sigmoid(zi), mp_sigmoid(-zi)
            u = ti * sc + (1 - ti) * s
            b = ti * mpmath.log1p(mpmath.exp(-zi)) + (1 - ti) * mpmath.log1p(mpmath.exp(zi))
            out[idx] = u ** gamma * (abs(gamma * (1 - 2 * ti) * s * sc / u * b) + s + ti) / n
    return out


def softmax_scale(t: np.ndarray, x: np.ndarray, coef: Any) -> np.ndarray:
    """|q_i sum_{j != i} a_j| + |v_i a_i| with a_j = t_j coef(q_j, n_j, v_j) (by hand)."""
    out = np.empty(x.shape, dtype=object)
    with mpmath.workdps(40):
        for r in range(x.shape[0]):
            xs = [mpf(float(v)) for v in x[r]]
            z = mpmath.fsum(mpmath.exp(v) for v in xs)
            q = [mpmath.exp(v) / z for v in xs]
            a = [mpf(float(t[r, j])) * coef(q[j], -mpmath.log(q[j]), 1 - q[j]) for j in range(K)]
            total = mpmath.fsum(a)
            for i in range(K):
                out[r, i] = q[i] * (total - a[i]) + (1 - q[i]) * a[i]
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_focal_soft_targets(dtype: Any) -> None:
    rng = np.random.default_rng(41)
    t, z = soft_rows(rng)
    t, z = t.astype(dtype), z.astype(dtype)
    opts = {"from_logits": True, "gamma": 1.5}
    entry = fam._binary_focal_entry(opts, {"generic": fam._bf_logits_generic})
    exact_v, exact_g = entry.exact({"y_true": t, "y_pred": z})
    v = losskit.binary_focal_crossentropy(t, z, **opts)
    R.assert_ulp(v, exact_v, dtype, what="binary focal soft value")
    g = losskit.BinaryFocalCrossentropy(reduction="none", **opts).gradient(t, z)
    R.assert_ulp(g, exact_g, dtype, scale=binary_focal_scale(t, z, 1.5), what="binary focal soft grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_categorical_focal_soft_targets(dtype: Any) -> None:
    rng = np.random.default_rng(42)
    t, x = soft_rows(rng)
    t, x = t.astype(dtype), x.astype(dtype)
    opts = {"from_logits": True, "gamma": 2.0, "alpha": 0.25}
    entry = fam._categorical_focal_entry(opts, {"generic": fam._dense(fam._logits_generic)})
    exact_v, exact_g = entry.exact({"y_true": t, "y_pred": x})
    R.assert_ulp(losskit.categorical_focal_crossentropy(t, x, **opts), exact_v, dtype,
                 what="categorical focal soft value")
    g = losskit.CategoricalFocalCrossentropy(reduction="none", **opts).gradient(t, x)
    scale = softmax_scale(t, x, lambda q, n, v: 0.25 * v ** 2 * (2 * q * n / v + 1))
    R.assert_ulp(g, exact_g, dtype, scale=scale, what="categorical focal soft grad")


@pytest.mark.parametrize("epsilon", [2.0, -0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_poly1_soft_targets(dtype: Any, epsilon: float) -> None:
    rng = np.random.default_rng(43)
    t, x = soft_rows(rng)
    t, x = t.astype(dtype), x.astype(dtype)
    entry = fam._poly1_entry({"epsilon": epsilon}, {"generic": fam._dense(fam._logits_generic)})
    exact_v, exact_g = entry.exact({"y_true": t, "y_pred": x})
    R.assert_ulp(losskit.poly_loss_cross_entropy(t, x, epsilon=epsilon), exact_v, dtype,
                 what="poly1 soft value")
    g = losskit.PolyLossCrossEntropy(reduction="none", epsilon=epsilon).gradient(t, x)
    scale = softmax_scale(t, x, lambda q, n, v: 1 + epsilon * q)
    R.assert_ulp(g, exact_g, dtype, scale=scale, what="poly1 soft grad")


# --------------------------------------------------------------------------- peers on soft targets


def test_keras_focal_losses_agree_on_smoothed_and_soft_targets() -> None:
    keras = pytest.importorskip("keras")
    from oracle.peers import keras_peer

    rng = np.random.default_rng(44)
    t, x = soft_rows(rng)
    y = rng.integers(0, 2, (ROWS, K)).astype(np.float64)
    p = rng.uniform(0.01, 0.99, (ROWS, K))
    cases = [
        ("binary_focal_crossentropy", keras.losses.binary_focal_crossentropy, y, x,
         {"from_logits": True, "label_smoothing": 0.1, "gamma": 1.5}),
        ("binary_focal_crossentropy", keras.losses.binary_focal_crossentropy, t, p,
         {"label_smoothing": 0.2, "apply_class_balancing": True, "alpha": 0.4}),
        ("categorical_focal_crossentropy", keras.losses.categorical_focal_crossentropy, t, x,
         {"from_logits": True, "label_smoothing": 0.1}),
        ("categorical_focal_crossentropy", keras.losses.categorical_focal_crossentropy, t,
         p / p.sum(-1, keepdims=True), {"gamma": 3.0, "alpha": 0.5}),
    ]
    for name, peer_fn, yt, yp, opts in cases:
        def fn(q: Any, a: dict[str, Any], o: Any, peer_fn: Any = peer_fn) -> Any:
            return peer_fn(a["y_true"], q, **o)

        peer_v, peer_g = keras_peer(fn)({"y_true": yt, "y_pred": yp}, opts)
        v, g = type(losskit.get(name))(reduction="none", **opts).value_and_gradient(yt, yp)
        np.testing.assert_allclose(peer_v, v, rtol=1e-6, err_msg=f"{name} {opts}")
        np.testing.assert_allclose(peer_g, g, rtol=1e-6, atol=1e-12, err_msg=f"{name} {opts}")


def test_optax_agrees_on_soft_targets() -> None:
    pytest.importorskip("optax")
    from oracle.peers import jax_peer

    rng = np.random.default_rng(45)
    t, x = soft_rows(rng)

    def poly(q: Any, a: dict[str, Any], o: Any) -> Any:
        import optax

        return optax.losses.poly_loss_cross_entropy(q, a["y_true"], epsilon=1.0)

    def focal(q: Any, a: dict[str, Any], o: Any) -> Any:
        import optax

        return optax.losses.sigmoid_focal_loss(q, a["y_true"], alpha=0.3, gamma=2.0).mean(-1)

    for name, fn, opts in (("poly_loss_cross_entropy", poly, {"epsilon": 1.0}),
                           ("binary_focal_crossentropy", focal,
                            {"from_logits": True, "apply_class_balancing": True, "alpha": 0.3})):
        peer_v, peer_g = jax_peer(fn)({"y_true": t, "y_pred": x}, opts)
        v, g = type(losskit.get(name))(reduction="none", **opts).value_and_gradient(t, x)
        np.testing.assert_allclose(peer_v, v, rtol=1e-9, err_msg=name)
        np.testing.assert_allclose(peer_g, g, rtol=1e-9, atol=1e-15, err_msg=name)


# --------------------------------------------------------------------------- invariants


def test_gamma_zero_focal_is_the_cross_entropy() -> None:
    rng = np.random.default_rng(46)
    t, x = soft_rows(rng)
    y = rng.integers(0, 2, (ROWS, K)).astype(np.float64)
    for from_logits, pred in ((True, x), (False, rng.uniform(0.01, 0.99, (ROWS, K)))):
        opts = {"from_logits": from_logits, "label_smoothing": 0.1}
        np.testing.assert_allclose(losskit.binary_focal_crossentropy(y, pred, gamma=0.0, **opts),
                                   losskit.binary_crossentropy(y, pred, **opts), rtol=1e-15)
        np.testing.assert_allclose(
            losskit.BinaryFocalCrossentropy(gamma=0.0, **opts).gradient(y, pred),
            losskit.BinaryCrossentropy(**opts).gradient(y, pred), rtol=1e-14)
    opts = {"from_logits": True, "label_smoothing": 0.1}
    np.testing.assert_allclose(
        losskit.categorical_focal_crossentropy(t, x, gamma=0.0, alpha=1.0, **opts),
        losskit.categorical_crossentropy(t, x, **opts), rtol=1e-14)
    np.testing.assert_allclose(
        losskit.CategoricalFocalCrossentropy(gamma=0.0, alpha=1.0, **opts).gradient(t, x),
        losskit.CategoricalCrossentropy(**opts).gradient(t, x), rtol=1e-12, atol=1e-16)


def test_epsilon_zero_poly1_is_the_cross_entropy() -> None:
    t, x = soft_rows(np.random.default_rng(47))
    np.testing.assert_allclose(losskit.poly_loss_cross_entropy(t, x, epsilon=0.0),
                               losskit.categorical_crossentropy(t, x, from_logits=True), rtol=1e-15)
    np.testing.assert_allclose(losskit.PolyLossCrossEntropy(epsilon=0.0).gradient(t, x),
                               losskit.CategoricalCrossentropy(from_logits=True).gradient(t, x),
                               rtol=1e-12, atol=1e-16)


def test_generalized_cross_entropy_limits() -> None:
    rng = np.random.default_rng(48)
    labels = rng.integers(0, K, ROWS)
    p = rng.dirichlet(np.ones(K), ROWS)
    p_k = p[np.arange(ROWS), labels]
    np.testing.assert_allclose(losskit.categorical_generalized_cross_entropy(labels, p, q=1.0),
                               1 - p_k, rtol=1e-15)
    # q -> 0: (1 - p^q)/q = -log p - q log(p)^2 / 2 + O(q^2)
    q = 1e-6
    np.testing.assert_allclose(losskit.categorical_generalized_cross_entropy(labels, p, q=q),
                               -np.log(p_k) - q * np.log(p_k) ** 2 / 2, rtol=1e-11)
    # from logits: the label's probability is the softmax
    x = np.log(p)
    np.testing.assert_allclose(
        losskit.categorical_generalized_cross_entropy(labels, x, from_logits=True, q=0.5),
        losskit.categorical_generalized_cross_entropy(labels, p, q=0.5), rtol=1e-14)


# --------------------------------------------------------------------------- NLL


def test_nll_pytorch_weighted_mean_through_sample_weights() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(49)
    labels = rng.integers(0, K, 20)
    labels[::4] = -100
    x = np.log(rng.dirichlet(np.ones(K), 20))
    w = np.array([0.5, 1.0, 2.0, 0.0, 3.0])
    expected = torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(labels),
                                            weight=torch.from_numpy(w), ignore_index=-100)
    sample_weight = w[np.where(labels == -100, 0, labels)]
    loss = losskit.NLL(reduction="mean_with_sample_weight", ignore_index=-100)
    np.testing.assert_allclose(loss(labels, x, sample_weight=sample_weight), expected.item(),
                               rtol=1e-14)
    # "sum" and "none" match PyTorch with the weight option itself
    for reduction in ("sum", "none"):
        ours = losskit.NLL(reduction=reduction, weight=w, ignore_index=-100)(labels, x)
        theirs = torch.nn.functional.nll_loss(torch.from_numpy(x), torch.from_numpy(labels),
                                              weight=torch.from_numpy(w), ignore_index=-100,
                                              reduction=reduction)
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-14)


def test_nll_options_and_errors() -> None:
    loss = losskit.NLL(ignore_index=2, weight=[1, 2, 3])
    assert loss.get_config()["ignore_class"] == 2
    assert loss.get_config()["weight"] == (1.0, 2.0, 3.0)
    assert losskit.get(losskit.serialize(loss)) == loss
    x = np.log([[0.2, 0.3, 0.5], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(loss(np.array([1, 2]), x, ), -2 * np.log(0.3))  # 1 counted sample
    with pytest.raises(ValueError, match=r"y_pred must lie in \[-inf, 0\]"):
        losskit.nll([0], [[0.2, 0.8]])
    with pytest.raises(ValueError, match="weight has 2 entries but y_pred has 3 classes"):
        losskit.nll([0], x[:1], weight=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 2\]"):
        losskit.nll([3], x[:1])
    with pytest.raises(TypeError, match="both ignore_class and its alias ignore_index"):
        losskit.NLL(ignore_index=1, ignore_class=1)


@pytest.mark.parametrize(("name", "options", "message"), [
    ("categorical_generalized_cross_entropy", {"q": 0.0}, r"q must lie in \(0, 1\]"),
    ("categorical_generalized_cross_entropy", {"q": 1.5}, r"q must lie in \(0, 1\]"),
    ("poly_loss_cross_entropy", {"epsilon": -2.0}, "epsilon must be >= -1"),
    ("binary_focal_crossentropy", {"gamma": -1.0}, "gamma must be >= 0"),
    ("binary_focal_crossentropy", {"alpha": 1.5}, r"alpha must lie in \[0, 1\]"),
    ("categorical_focal_crossentropy", {"alpha": -0.5}, "alpha must be >= 0"),
])
def test_option_errors(name: str, options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        losskit.get(name).__class__(**options)


def test_probability_domain_errors() -> None:
    with pytest.raises(ValueError, match="from_logits=True"):
        losskit.binary_focal_crossentropy([[1.0]], [[2.0]])
    with pytest.raises(ValueError, match=r"class indices must lie in \[0, 1\]"):
        losskit.categorical_generalized_cross_entropy([2], [[0.5, 0.5]])


def test_aliases() -> None:
    for alias, cls in (("focal_loss", losskit.BinaryFocalCrossentropy),
                       ("sigmoid_focal_loss", losskit.BinaryFocalCrossentropy),
                       ("categorical_focal_loss", losskit.CategoricalFocalCrossentropy),
                       ("gce", losskit.CategoricalGeneralizedCrossEntropy),
                       ("generalized_cross_entropy", losskit.CategoricalGeneralizedCrossEntropy),
                       ("poly1", losskit.PolyLossCrossEntropy),
                       ("nll_loss", losskit.NLL), ("NLLLoss", losskit.NLL),
                       ("negative_log_likelihood", losskit.NLL)):
        assert type(losskit.get(alias)) is cls


# --------------------------------------------------------------------------- where


def where_rows(rng: np.random.Generator) -> np.ndarray:
    """A mask keeping some elements of each row, one row keeping nothing."""
    where = rng.random((ROWS, K)) < 0.6
    where[np.arange(ROWS), rng.integers(0, K, ROWS)] = True
    where[3] = False
    return where


def test_gamma_zero_focal_with_where_is_the_cross_entropy_with_where() -> None:
    """With gamma = 0 (alpha = 1) the focal losses are BCE and CCE, also under a where mask
    (Optax semantics: the kept elements' mean; the kept classes' softmax, smoothing over them)."""
    rng = np.random.default_rng(50)
    t, x = soft_rows(rng)
    y = rng.integers(0, 2, (ROWS, K)).astype(np.float64)
    where = where_rows(rng)
    for from_logits, pred in ((True, x), (False, rng.uniform(0.01, 0.99, (ROWS, K)))):
        opts = {"from_logits": from_logits, "label_smoothing": 0.1}
        np.testing.assert_allclose(
            losskit.binary_focal_crossentropy(y, pred, gamma=0.0, where=where, **opts),
            losskit.binary_crossentropy(y, pred, where=where, **opts), rtol=1e-15)
        np.testing.assert_allclose(
            losskit.BinaryFocalCrossentropy(gamma=0.0, **opts).gradient(y, pred, where=where),
            losskit.BinaryCrossentropy(**opts).gradient(y, pred, where=where), rtol=1e-14)
        np.testing.assert_allclose(
            losskit.categorical_focal_crossentropy(t, pred, gamma=0.0, alpha=1.0, where=where,
                                                   **opts),
            losskit.categorical_crossentropy(t, pred, where=where, **opts), rtol=1e-14)
        np.testing.assert_allclose(
            losskit.CategoricalFocalCrossentropy(gamma=0.0, alpha=1.0, **opts).gradient(
                t, pred, where=where),
            losskit.CategoricalCrossentropy(**opts).gradient(t, pred, where=where),
            rtol=1e-12, atol=1e-16)


def test_focal_where_drops_excluded_classes() -> None:
    """Excluded classes change nothing (any value, even NaN or inf logits), get a zero gradient,
    and a row with nothing kept gives 0; all-True is the unmasked loss, bit for bit."""
    rng = np.random.default_rng(51)
    t, x = soft_rows(rng)
    y = rng.integers(0, 2, (ROWS, K)).astype(np.float64)
    where = where_rows(rng)
    junk = np.where(where, x, np.nan)
    for name, target in (("binary_focal_crossentropy", y), ("categorical_focal_crossentropy", t)):
        loss = type(losskit.get(name))(from_logits=True, reduction="none")
        v, g = loss.value_and_gradient(target, x, where=where)
        v2, g2 = loss.value_and_gradient(target, junk, where=where)
        np.testing.assert_array_equal(v, v2)
        np.testing.assert_array_equal(g, g2)
        assert v[3] == 0
        assert not g[3].any()
        assert not g[~where].any()
        v_all, g_all = loss.value_and_gradient(target, x, where=np.ones_like(where))
        v_none, g_none = loss.value_and_gradient(target, x)
        np.testing.assert_array_equal(v_all, v_none)
        np.testing.assert_array_equal(g_all, g_none)


def test_poly1_and_gce_with_where_match_the_cross_entropy_with_where() -> None:
    """epsilon = 0 Poly-1 is the cross-entropy, q = 1 GCE is 1 - p_k, under a where mask too."""
    rng = np.random.default_rng(52)
    t, x = soft_rows(rng)
    where = where_rows(rng)
    np.testing.assert_allclose(
        losskit.poly_loss_cross_entropy(t, x, epsilon=0.0, where=where),
        losskit.categorical_crossentropy(t, x, from_logits=True, where=where), rtol=1e-15)
    np.testing.assert_allclose(
        losskit.PolyLossCrossEntropy(epsilon=0.0).gradient(t, x, where=where),
        losskit.CategoricalCrossentropy(from_logits=True).gradient(t, x, where=where),
        rtol=1e-12, atol=1e-16)
    labels = np.argmax(np.where(where, rng.random((ROWS, K)), -1.0), axis=-1)
    e = np.where(where, np.exp(x), 0.0)
    p_k = (e / np.where(where.any(-1, keepdims=True), e.sum(-1, keepdims=True), 1.0))[
        np.arange(ROWS), labels]
    np.testing.assert_allclose(
        losskit.categorical_generalized_cross_entropy(labels, x, q=1.0, from_logits=True,
                                                      where=where),
        np.where(where.any(-1), 1 - p_k, 0.0), rtol=1e-14)


def test_where_on_integer_labels() -> None:
    """GCE and NLL refuse a label whose class is excluded (as sparse_categorical_crossentropy),
    accept an all-excluded sample (0) or an ignored one; NLL is otherwise -w_k x_k unchanged."""
    rng = np.random.default_rng(53)
    labels = rng.integers(0, K, ROWS)
    logp = np.log(rng.dirichlet(np.ones(K), ROWS))
    where = where_rows(rng)
    where[np.arange(ROWS), labels] |= where.any(-1)
    w = (0.5, 1.0, 2.0, 0.0, 3.0)
    plain = losskit.nll(labels, logp, weight=w)
    np.testing.assert_array_equal(losskit.nll(labels, logp, weight=w, where=where),
                                  np.where(where.any(-1), plain, 0.0))
    junk = np.where(where, logp, np.nan)  # excluded classes are not read
    np.testing.assert_array_equal(losskit.nll(labels, junk, weight=w, where=where),
                                  np.where(where.any(-1), plain, 0.0))
    bad = where.copy()
    bad[0] = True
    bad[0, labels[0]] = False
    for name, opts in (("nll", {}), ("categorical_generalized_cross_entropy", {"from_logits": True})):
        fn = losskit.get(name).__class__(reduction="none", **opts)
        with pytest.raises(ValueError, match=f"^{name}: where excludes the label's own class in 1"):
            fn(labels, logp, where=bad)
    assert losskit.nll(labels, logp, where=bad, ignore_class=int(labels[0]))[0] == 0
    bad[0] = False
    assert losskit.categorical_generalized_cross_entropy(labels, logp, from_logits=True,
                                                         where=bad)[0] == 0


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_where_on_backends_and_autograd(backend: str) -> None:
    """Values and autograd gradients with where on PyTorch and JAX (under jit) equal NumPy's."""
    rng = np.random.default_rng(54)
    t, x = soft_rows(rng)
    y = rng.integers(0, 2, (ROWS, K)).astype(np.float64)
    labels = rng.integers(0, K, ROWS)
    where = where_rows(rng)
    where[np.arange(ROWS), labels] |= where.any(-1)
    logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    cases = [("binary_focal_crossentropy", y, x, {"from_logits": True}),
             ("categorical_focal_crossentropy", t, x, {"from_logits": True}),
             ("categorical_generalized_cross_entropy", labels, x, {"from_logits": True}),
             ("poly_loss_cross_entropy", t, x, {}),
             ("nll", labels, logp, {"weight": (0.5, 1.0, 2.0, 0.0, 3.0)})]
    for name, target, pred, opts in cases:
        want = losskit.get(name).__class__(reduction="none", **opts)(target, pred, where=where)
        want_g = losskit.get(name).__class__(reduction="sum", **opts).gradient(target, pred,
                                                                               where=where)
        fn = getattr(losskit, name)
        if backend == "torch":
            torch = pytest.importorskip("torch")
            p = torch.tensor(pred, requires_grad=True)
            out = fn(torch.tensor(target), p, where=torch.tensor(where), **opts)
            out.sum().backward()
            got, got_g = out.detach().numpy(), p.grad.numpy()
        else:
            jax = pytest.importorskip("jax")
            jnp = jax.numpy
            previous = jax.config.jax_enable_x64
            jax.config.update("jax_enable_x64", True)
            try:
                def f(p: Any, fn: Any = fn, target: Any = target, opts: Any = opts,
                      jnp: Any = jnp) -> Any:
                    return fn(jnp.asarray(target), p, where=jnp.asarray(where), **opts)
                got = np.asarray(jax.jit(f)(jnp.asarray(pred)))
                got_g = np.asarray(jax.jit(jax.grad(lambda p, f=f: f(p).sum()))(jnp.asarray(pred)))
            finally:
                jax.config.update("jax_enable_x64", previous)
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=name)
        np.testing.assert_allclose(got_g, want_g, rtol=1e-13, atol=1e-16, err_msg=name)
