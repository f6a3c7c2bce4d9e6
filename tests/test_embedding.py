"""Embedding and ranking losses (issue 12): the peers' batch-level forms, option semantics, bad inputs.

The per-row values and gradients are checked against mpmath in the catalog suite
(``tests/oracle/families/embedding.py``). Here: the batch-coupled peers that take embeddings rather
than rows of a similarity matrix (Optax ``ntxent``, Keras ``circle``), whose values and gradients with
respect to the embeddings must equal losskit's through autograd of the similarity matrix; the
conventions documented for each loss; and the error messages.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

import losskit

os.environ.setdefault("KERAS_BACKEND", "jax")

LABELS = np.array([0, 0, 1, 1, 2, 0, 2])


@pytest.fixture
def x64():
    jax = pytest.importorskip("jax")
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield jax
    jax.config.update("jax_enable_x64", previous)


def _unit_similarity(xp, e):
    u = e / xp.sqrt(xp.sum(e * e, axis=-1, keepdims=True))
    return u @ u.T


# ------------------------------------------------------------------------------ the batch-level peers


@pytest.mark.parametrize("temperature", [0.07])
def test_ntxent_equals_optax_on_embeddings(x64, temperature):
    """Optax's ntxent(embeddings, labels) is losskit's row loss of the cosine-similarity matrix,
    weighted by the number of positives per anchor; gradients w.r.t. the embeddings agree."""
    optax = pytest.importorskip("optax")
    jnp = x64.numpy
    emb = jnp.asarray(np.random.default_rng(3).normal(size=(7, 5)))
    labels = jnp.asarray(LABELS)
    y, where = losskit.pair_masks(labels)
    loss = losskit.NTXent(reduction="mean_with_sample_weight", temperature=temperature)

    def ours(e):
        return loss(y, _unit_similarity(jnp, e), sample_weight=y.sum(-1), where=where)

    def theirs(e):
        return optax.losses.ntxent(e, labels, temperature=temperature)

    # one jit of each: the double-length kernel op by op took 37 s of eager dispatch
    np.testing.assert_allclose(float(x64.jit(ours)(emb)), float(theirs(emb)), rtol=1e-12)
    np.testing.assert_allclose(x64.jit(x64.grad(ours))(emb), x64.grad(theirs)(emb), rtol=1e-9,
                               atol=1e-13)


@pytest.mark.parametrize(("opts", "remove_diagonal"), [({}, True), ({"gamma": 4.0, "margin": 0.25}, False)])
def test_circle_equals_keras_on_embeddings(x64, opts, remove_diagonal):
    keras = pytest.importorskip("keras")
    jnp = x64.numpy
    previous = keras.config.floatx()
    keras.config.set_floatx("float64")
    try:
        emb = jnp.asarray(np.random.default_rng(4).normal(size=(7, 3)))
        labels = jnp.asarray(LABELS)
        y, where = losskit.pair_masks(labels, remove_diagonal=remove_diagonal)

        def unit(e):
            return e / jnp.sqrt(jnp.sum(e * e, axis=-1, keepdims=True))

        def ours(e):
            return losskit.circle(y, unit(e) @ unit(e).T, where=where, **opts)

        def theirs(e):
            return keras.losses.circle(labels, unit(e), remove_diagonal=remove_diagonal, **opts)

        np.testing.assert_allclose(x64.jit(ours)(emb), theirs(emb), rtol=1e-12)
        np.testing.assert_allclose(x64.jit(x64.grad(lambda e: ours(e).sum()))(emb),
                                   x64.grad(lambda e: theirs(e).sum())(emb), rtol=1e-9, atol=1e-12)
    finally:
        keras.config.set_floatx(previous)


def test_infonce_is_cross_entropy_and_trains_both_towers_in_torch():
    """In-batch negatives from two embedding matrices (positive on the diagonal): the row loss is
    PyTorch's cross-entropy of S / T with labels 0..B-1, and autograd reaches both towers; the
    symmetric (CLIP) form is the mean of the loss of S and of S.T."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    q0, k0 = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    eye = torch.eye(6, dtype=torch.float64)
    grads = []
    for use_losskit in (True, False):
        q = torch.tensor(q0, requires_grad=True)
        k = torch.tensor(k0, requires_grad=True)
        s = torch.nn.functional.normalize(q, dim=-1) @ torch.nn.functional.normalize(k, dim=-1).T
        if use_losskit:
            loss = losskit.NTXent(temperature=0.05)
            value = (loss(eye, s) + loss(eye, s.T)) / 2
        else:
            ce = torch.nn.functional.cross_entropy
            target = torch.arange(6)
            value = (ce(s / 0.05, target) + ce(s.T / 0.05, target)) / 2
        value.backward()
        grads.append((float(value), q.grad.numpy(), k.grad.numpy()))
    (v1, gq1, gk1), (v2, gq2, gk2) = grads
    np.testing.assert_allclose(v1, v2, rtol=1e-12)
    np.testing.assert_allclose(gq1, gq2, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(gk1, gk2, rtol=1e-9, atol=1e-14)


def test_supcon_equals_log_softmax_with_several_positives():
    """denominator='all' is Khosla et al.'s L_out: minus the mean log-softmax (over the valid entries)
    of the positives; value and gradient against PyTorch autograd of that formula."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    s = rng.uniform(-1, 1, size=(5, 6))
    y = (rng.random((5, 6)) < 0.4).astype(float)
    y[:, 0] = 1.0
    ts = torch.tensor(s, requires_grad=True)
    ty = torch.tensor(y)
    expected = -(torch.log_softmax(ts / 0.1, -1) * ty).sum(-1) / ty.sum(-1)
    expected.sum().backward()
    value, grad = losskit.NTXent(reduction="none", temperature=0.1, denominator="all").value_and_gradient(
        y, s)
    np.testing.assert_allclose(value, expected.detach().numpy(), rtol=1e-13)
    np.testing.assert_allclose(grad, ts.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_confident_row_keeps_its_tiny_loss():
    """Temperature 0.01 and a positive 0.5 above every negative: the loss is about 4 e^-50 (2e-22);
    the textbook -log softmax rounds it to 0 (and its gradient with it)."""
    s = np.array([[0.9, 0.4, 0.35, 0.3, 0.38]])
    y = np.array([[1.0, 0, 0, 0, 0]])
    value = float(losskit.ntxent(y, s, temperature=0.01)[0])
    z = s / 0.01
    exact = np.log1p(np.sum(np.exp((s[0, 1:] - s[0, 0]) / 0.01)))  # log1p of the tiny sum: exact here
    textbook = -(z[0, 0] - np.log(np.sum(np.exp(z[0]))))
    assert textbook == 0.0
    assert value > 0
    np.testing.assert_allclose(value, exact, rtol=1e-14)


# ------------------------------------------------------------------------------ PyTorch conventions


def test_pair_losses_give_the_other_members_gradient_by_symmetry():
    """cosine_embedding is symmetric in (x1, x2) and margin_ranking antisymmetric: a second call with
    the roles swapped gives PyTorch's gradient with respect to x2."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(6)
    x1, x2 = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    y = np.array([1.0, -1.0, 1.0, -1.0, -1.0])
    t2 = torch.tensor(x2, requires_grad=True)
    F.cosine_embedding_loss(torch.tensor(x1), t2, torch.tensor(y), margin=-0.2, reduction="sum").backward()
    g2 = losskit.CosineEmbedding(margin=-0.2, reduction="sum").gradient(y, x2, x2=x1)
    np.testing.assert_allclose(g2, t2.grad.numpy(), rtol=1e-9)
    signs = np.sign(rng.normal(size=(5, 3)))
    t2 = torch.tensor(x2, requires_grad=True)
    F.margin_ranking_loss(torch.tensor(x1), t2, torch.tensor(signs), margin=0.3, reduction="sum").backward()
    g2 = losskit.MarginRanking(margin=0.3, reduction="sum").gradient(-signs, x2, x2=x1) * 3
    np.testing.assert_allclose(g2, t2.grad.numpy(), rtol=1e-12)


@pytest.mark.parametrize("opts", [{"p": 3.0}, {"p": 1.5, "swap": True}, {"p": 2.0, "eps": 0.1}])
def test_triplet_other_powers_agree_with_torch(opts):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(7)
    a, p, n = (rng.normal(size=(6, 4)) for _ in range(3))
    ta = torch.tensor(a, requires_grad=True)
    out = torch.nn.functional.triplet_margin_loss(ta, torch.tensor(p), torch.tensor(n), reduction="none",
                                                  **opts)
    out.sum().backward()
    value, grad = losskit.TripletMargin(reduction="none", **opts).value_and_gradient(p, a, negative=n)
    np.testing.assert_allclose(value, out.detach().numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(grad, ta.grad.numpy(), rtol=1e-10, atol=1e-15)


def test_triplet_options():
    rng = np.random.default_rng(8)
    a, p, n = (rng.normal(size=(6, 4)) for _ in range(3))
    base = losskit.triplet_margin(p, a, negative=n)
    # Optax's name for the norm degree; "euclidean" is p = 2 whatever p says
    np.testing.assert_array_equal(losskit.triplet_margin(p, a, negative=n, norm_degree=1.0),
                                  losskit.triplet_margin(p, a, negative=n, p=1.0))
    np.testing.assert_array_equal(losskit.triplet_margin(p, a, negative=n, p=1.0,
                                                         distance_function="euclidean"), base)
    # without eps the two placements are the same distance
    np.testing.assert_allclose(losskit.triplet_margin(p, a, negative=n, eps=0.0),
                               losskit.triplet_margin(p, a, negative=n, eps=0.0, eps_placement="sum"),
                               rtol=1e-15)
    # the swap can only shorten the negative's distance: the loss can only grow
    assert np.all(losskit.triplet_margin(p, a, negative=n, swap=True) >= base)
    assert losskit.TripletMargin(p=1.0).get_config()["p"] == 1.0
    with pytest.raises(TypeError, match="norm_degree"):
        losskit.TripletMargin(p=1.0, norm_degree=2.0)


def test_pair_masks():
    y, where = losskit.pair_masks([0, 1, 0], remove_diagonal=False)
    np.testing.assert_array_equal(y, [[1, 0, 1], [0, 1, 0], [1, 0, 1]])
    assert where.all()
    y, where = losskit.pair_masks(np.array([0, 1]), np.array([1, 1, 0]), remove_diagonal=False)
    np.testing.assert_array_equal(y, [[0, 0, 1], [1, 1, 0]])
    torch = pytest.importorskip("torch")
    y, where = losskit.pair_masks(torch.tensor([2, 2, 3]))
    assert isinstance(y, torch.Tensor)
    np.testing.assert_array_equal(y.numpy(), [[0, 1, 0], [1, 0, 0], [0, 0, 0]])
    with pytest.raises(ValueError, match="1-D"):
        losskit.pair_masks(np.zeros((2, 2)))


# ------------------------------------------------------------------------------------- bad inputs


def test_bad_inputs_have_clear_messages():
    s = np.zeros((2, 3))
    with pytest.raises(ValueError, match=r"ntxent: y_true must be a 0/1 mask.*y_true\[0, 1\]"):
        losskit.ntxent([[1.0, 2.0, 0.0], [1.0, 0.0, 0.0]], s)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        losskit.ntxent(np.eye(3), np.eye(3), temperature=0.0)
    with pytest.raises(ValueError, match="margin must be >= 0"):
        losskit.Circle(margin=-0.1)
    with pytest.raises(TypeError, match="needs the input array negative="):
        losskit.triplet_margin(s, s)
    with pytest.raises(ValueError, match="eps_placement must be one of 'difference', 'sum'; found 'torch'"):
        losskit.TripletMargin(eps_placement="torch")
    with pytest.raises(ValueError, match="distance_function must be one of"):
        losskit.triplet_margin(s, s, negative=s, distance_function="manhattan")
    with pytest.raises(ValueError, match=r"y_pred must lie in \(-3.27\d*e\+150"):
        losskit.triplet_margin(s, np.full((2, 3), np.inf), negative=s)
    with pytest.raises(ValueError, match="negative has shape"):
        losskit.triplet_margin(s, s, negative=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="cosine_embedding: y_true must hold labels -1 and 1"):
        losskit.cosine_embedding([1.0, 0.0], s, x2=s)
    with pytest.raises(ValueError, match="y_true has shape"):
        losskit.cosine_embedding(np.ones((2, 3)), np.ones((2, 4)), x2=np.ones((2, 4)))
    with pytest.raises(ValueError, match="margin_ranking: y_true must hold labels -1 and 1"):
        losskit.margin_ranking([[1.0, 0.5, -1.0]], [[1.0, 2.0, 3.0]], x2=[[0.0, 0.0, 0.0]])
    with pytest.raises(ValueError, match="hinge_embedding: y_true must hold labels -1 and 1"):
        losskit.hinge_embedding([[1.0, 0.0]], [[1.0, 2.0]])


def test_rows_without_positives_or_negatives_give_zero():
    s = np.array([[0.3, 0.2, 0.1], [0.3, 0.2, 0.1]])
    y = np.array([[0.0, 0, 0], [1.0, 1, 1]])
    for loss in (losskit.NTXent(reduction="none"), losskit.Circle(reduction="none")):
        value, grad = loss.value_and_gradient(y, s)
        np.testing.assert_array_equal(value, [0.0, 0.0])
        np.testing.assert_array_equal(grad, 0.0)


# ------------------------------------------------- gradients of the other members, against mpmath


def _member_cases():
    from oracle.families import embedding as fam

    out = []
    for entry in fam.ENTRIES:
        for member in fam.MEMBERS.get(entry.loss, ()):
            for regime in entry.regimes:
                for dtype in ("float64", "float32"):  # float32: the plain float64 tier and its
                    out.append((entry, member, regime, dtype))  # double-length fallback rows
    return out


MEMBER_CASES = _member_cases()


@pytest.mark.parametrize(("entry", "member", "regime", "dtype"), MEMBER_CASES,
                         ids=[f"{e.id}-{m}-{r}-{d}" for e, m, r, d in MEMBER_CASES])
def test_member_gradient_within_8_ulp_of_mpmath(entry, member, regime, dtype):
    """The gradient with respect to a triplet's positive and negative and a pair's x2
    (``Loss.value_and_gradients``, reduction 'none') against mpmath's numerical derivative of the
    row written from the definition, within the 8-ulp contract (the regimes include hinges that
    cancel, nearly parallel vectors and magnitudes from 1e-3 to 1e12)."""
    from oracle import reference as R
    from oracle.families import embedding as fam

    arrays = entry.inputs(regime, np.dtype(dtype))
    names = entry.input_names(arrays)
    spec = fam.member_spec(entry, member)
    exact = []
    for (t, p, opts), row in zip(entry.rows(arrays), range(len(arrays["y_pred"])), strict=True):
        v = list(np.atleast_1d(arrays[member][row]))
        exact.append(R.row_grad(spec, t, v, {**opts, "y_pred": p}, names | {"y_pred"}))
    obj = type(losskit.get(entry.loss))(reduction="none", **entry.options)
    extras = {k: arrays[k] for k in names}
    _, grads = obj.value_and_gradients(arrays["y_true"], arrays["y_pred"], **extras)
    g = grads[member]
    assert g.dtype == np.dtype(dtype)
    assert g.shape == arrays[member].shape
    R.assert_ulp(g, exact, np.dtype(dtype), max_ulp=entry.max_ulp,
                 what=f"{entry.id}/{regime}/{dtype} gradient wrt {member}",
                 inputs={k: arrays[k] for k in arrays})
