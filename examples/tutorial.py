"""The Keras tutorial's program on losskit.nn: only the imports differ.

Trains a 10-64-32-1 network on random data for 10 epochs with a live progress bar, then saves a PNG
plot of the training loss per epoch (needs matplotlib: ``pip install 'losskit[plot]'``).

Run: python examples/tutorial.py [output.png]      (``make demo`` runs it)
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from losskit.nn import Dense, Sequential

DEFAULT_PLOT = os.path.join("build", "tutorial-loss.png")


def tutorial() -> tuple[Sequential, dict[str, list[float]]]:
    """The tutorial, verbatim apart from the imports above (and the returned values)."""
    model = Sequential([Dense(64, input_shape=(10,), activation='relu'),
                        Dense(32, activation='relu'), Dense(1)])
    model.compile(optimizer='adam', loss='mean_squared_error')
    x_train = np.random.rand(1000, 10); y_train = np.random.rand(1000, 1)  # noqa: E702, NPY002
    history = model.fit(x_train, y_train, epochs=10, batch_size=32)
    return model, history.history


def plot_loss(losses: list[float], path: str) -> str | None:
    """Save the per-epoch training loss as a PNG; None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    epochs = np.arange(1, len(losses) + 1)
    ax.plot(epochs, losses, marker="o")
    ax.set(xlabel="epoch", ylabel="training loss (mean squared error)", xticks=epochs,
           title="losskit.nn: the Keras tutorial model")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return os.path.abspath(path)


def main(argv: list[str]) -> None:
    start = time.perf_counter()
    _, history = tutorial()
    print(f"\ntrained in {time.perf_counter() - start:.2f} s; loss per epoch: "
          + " ".join(f"{v:.4f}" for v in history["loss"]))
    path = plot_loss(history["loss"], argv[0] if argv else DEFAULT_PLOT)
    if path is None:
        print("plot skipped: matplotlib is not installed. Get it with  pip install 'losskit[plot]'  "
              "(or  pip install matplotlib), then run  python examples/tutorial.py  again.")
    else:
        print(f"training loss plot: {path}")


if __name__ == "__main__":
    main(sys.argv[1:])
