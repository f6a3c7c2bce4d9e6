"""Handwritten digits (scikit-learn's 8x8 digits, shipped with it: no download) with a softmax
classifier trained by losskit.nn on sparse categorical cross-entropy.

Needs scikit-learn (for the data): pip install 'losskit[examples]'.
Run: python examples/digits.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from losskit.nn import Dense, Dropout, Sequential, set_random_seed


def main(epochs: int = 30, verbose: int | str = 2, seed: int = 0) -> tuple[Sequential, float]:
    """Train on 75% of the digits; return the model and its accuracy on the held-out 25%."""
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)  # pixel intensities 0..16 -> [0, 1]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)

    set_random_seed(seed)
    model = Sequential([
        Dense(128, activation="relu", input_shape=(64,)),
        Dropout(0.2),
        Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, validation_split=0.1, verbose=verbose)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    if verbose:
        print(f"test loss {loss:.4f}, test accuracy {accuracy:.2%} on {len(x_test)} digits")
    return model, accuracy


if __name__ == "__main__":
    main()
