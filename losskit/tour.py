"""A short tour: the seven tutorial losses and their gradients, next to the textbook formula.

Run it with ``python -m losskit.tour`` (``make demo`` trains the tutorial's model instead). Each
loss is evaluated on a small example; where the naive textbook formula (as most code writes it)
goes wrong, its answer is printed beside losskit's, with the exact value computed by Python's
``decimal`` module at 50 digits.
"""

from __future__ import annotations

from decimal import Decimal, getcontext

import numpy as np

import losskit

getcontext().prec = 50


def exact_ln(x: float | Decimal) -> Decimal:
    return Decimal(x).ln()


def exact_exp(x: float | Decimal) -> Decimal:
    return Decimal(x).exp()


def show(title: str, formula: str) -> None:
    print(f"\n{title}\n  {formula}")


def row(label: str, value: object) -> None:
    print(f"  {label:<34} {value}")


def compare(label: str, ours: float, naive: float, exact: Decimal) -> None:
    def rel(x: float) -> str:
        if not np.isfinite(x):
            return "(not finite)"
        err = abs(Decimal(float(x)) - exact) / abs(exact) if exact else Decimal(abs(x))
        return f"(relative error {float(err):.1e})"

    row(label + ", exact", f"{float(exact):.16g}")
    row("  losskit", f"{ours:.16g} {rel(ours)}")
    row("  textbook formula", f"{naive:.16g} {rel(naive)}")


def main() -> None:
    print("losskit tour: per-sample loss values and gradients (d loss / d y_pred)")
    np.seterr(all="ignore")  # the textbook formulas below overflow on purpose

    # -- mean squared error -------------------------------------------------------------------
    show("1. mean_squared_error", "mean((y_pred - y_true)^2) over the last axis")
    y, p = np.array([[1.0, 2.0, 3.0]]), np.array([[1.5, 2.0, 2.0]])
    row("value", losskit.mean_squared_error(y, p))
    row("gradient", losskit.MeanSquaredError(reduction="sum").gradient(y, p))
    y, p = np.array([[1e30]]), np.array([[-1e30]])
    naive32 = float(np.mean((p.astype(np.float32) - y.astype(np.float32)) ** 2))
    compare("float64 input 1e30 vs -1e30", float(losskit.mse(y, p)[0]), naive32,
            (Decimal(float(y[0, 0])) - Decimal(float(p[0, 0]))) ** 2)
    row("", "(the textbook line here computes in float32, as Keras does for every loss)")

    # -- mean absolute error ------------------------------------------------------------------
    show("2. mean_absolute_error", "mean(|y_pred - y_true|); the subgradient at zero error is 0")
    y, p = np.array([[1.0, 2.0, 3.0]]), np.array([[1.5, 2.0, 2.0]])
    row("value", losskit.mean_absolute_error(y, p))
    row("gradient", losskit.MeanAbsoluteError(reduction="sum").gradient(y, p))

    # -- binary cross-entropy -----------------------------------------------------------------
    show("3. binary_crossentropy", "-y log p - (1-y) log(1-p); from logits: softplus form")
    y, p = np.array([[1.0]]), np.array([[1e-9]])
    clipped = float(-np.log(np.clip(p, 1e-7, 1 - 1e-7))[0, 0])
    compare("p = 1e-9 for a positive label", float(losskit.bce(y, p)[0]), clipped, -exact_ln(1e-9))
    row("", "(textbook line: probabilities clipped to [1e-7, 1-1e-7], as in Keras)")
    row("  losskit gradient", losskit.BinaryCrossentropy().gradient(y, p)[0])
    row("  clipped gradient", "[0.] (the clip is flat there: no signal to learn from)")
    x = np.array([[-800.0]])
    naive = float(-np.log(1.0 / (1.0 + np.exp(-x)))[0, 0])
    compare("logit -800 for a positive label", float(losskit.bce(y, x, from_logits=True)[0]),
            naive, exact_ln(1 + exact_exp(800)))

    # -- categorical cross-entropy ------------------------------------------------------------
    show("4. categorical_crossentropy", "sum_j y_j (logsumexp(x) - x_j) from logits")
    y, x = np.array([[1.0, 0.0]]), np.array([[30.0, 0.0]])
    shifted = x - x.max()
    naive = float(-(shifted - np.log(np.exp(shifted).sum()))[0, 0])
    compare("confident logits [30, 0]", float(losskit.cce(y, x, from_logits=True)[0]), naive,
            exact_ln(1 + exact_exp(-30)))
    row("", "(textbook line: log_softmax, as PyTorch, JAX and Keras compute it)")
    row("  losskit gradient", losskit.CategoricalCrossentropy(from_logits=True).gradient(y, x)[0])
    x32 = x.astype(np.float32)
    row("  same logits in float32: losskit", losskit.cce(y.astype(np.float32), x32, from_logits=True))
    s32 = x32 - x32.max()
    row("  same logits in float32: textbook", -(s32 - np.log(np.exp(s32).sum()))[:, 0])

    # -- sparse categorical cross-entropy -----------------------------------------------------
    show("5. sparse_categorical_crossentropy", "logsumexp(x) - x_label, integer labels")
    labels, x = np.array([1]), np.array([[1000.0, -1000.0, 0.0]])
    naive = float(-np.log(np.exp(x[0, 1]) / np.exp(x).sum()))
    compare("logits [1000, -1000, 0], label 1",
            float(losskit.scce(labels, x, from_logits=True)[0]), naive,
            Decimal(2000) + exact_ln(1 + exact_exp(-1000) + exact_exp(-2000)))
    row("  losskit gradient",
        losskit.SparseCategoricalCrossentropy(from_logits=True).gradient(labels, x)[0])

    # -- hinge --------------------------------------------------------------------------------
    show("6. hinge", "mean(max(0, 1 - y f)); labels 0/1 become -1/+1 as in Keras")
    y, f = np.array([[1.0, 0.0, 1.0]]), np.array([[0.3, -2.0, 1.0]])
    row("value", losskit.hinge(y, f))
    row("gradient (last one on the margin)", losskit.Hinge(reduction="sum").gradient(y, f))

    # -- KL divergence ------------------------------------------------------------------------
    show("7. kl_divergence", "sum_j y_j log(y_j / p_j), 0 log 0 = 0")
    y, p = np.array([[0.2 + 1e-8, 0.3, 0.5 - 1e-8]]), np.array([[0.2, 0.3, 0.5]])
    naive = float(np.sum(y * np.log(y / p)))
    ty, tp = [Decimal(v) for v in y[0]], [Decimal(v) for v in p[0]]
    exact = sum((a * (a / b).ln() for a, b in zip(ty, tp, strict=True)), Decimal(0))
    compare("distributions 1e-8 apart", float(losskit.kld(y, p)[0]), naive, exact)
    row("  losskit gradient", losskit.KLDivergence(reduction="sum").gradient(y, p)[0])

    print("\nReduced losses, weights and gradients: losskit.MeanSquaredError(), "
          "loss(y, p, sample_weight), loss.value_and_gradient(y, p).")


if __name__ == "__main__":
    main()
