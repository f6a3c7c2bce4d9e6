"""Diabetes progression (scikit-learn's diabetes data, shipped with it: no download): a small
regression network trained by losskit.nn on mean squared error, with mean absolute error tracked.

Needs scikit-learn (for the data): pip install 'losskit[examples]'.
Run: python examples/diabetes.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

from losskit.nn import Dense, EarlyStopping, Sequential, set_random_seed


def main(epochs: int = 200, verbose: int | str = 0, seed: int = 0) -> tuple[Sequential, float, float]:
    """Train on 80% of the patients; return the model, and its R^2 and MAE (in target units) on the rest."""
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=seed)
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    y_mean, y_std = y_train.mean(), y_train.std()
    scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731

    set_random_seed(seed)
    model = Sequential([Dense(32, activation="relu", input_shape=(10,)), Dense(1)])
    model.compile(optimizer="adam", loss="mean_squared_error", metrics=["mae"])
    model.fit(scale(x_train), (y_train - y_mean) / y_std, epochs=epochs, batch_size=32, verbose=verbose,
              validation_split=0.2, callbacks=[EarlyStopping(patience=20, restore_best_weights=True)])
    pred = model.predict(scale(x_test), verbose=0)[:, 0] * y_std + y_mean
    r2 = 1 - np.sum((y_test - pred) ** 2) / np.sum((y_test - y_test.mean()) ** 2)
    mae = float(np.mean(np.abs(y_test - pred)))
    print(f"test R^2 {r2:.3f}, test MAE {mae:.1f} (target range {y.min():.0f}..{y.max():.0f})")
    return model, float(r2), mae


if __name__ == "__main__":
    main()
