"""The seed's section-5 model, trained on real data: scikit-learn's handwritten digits.

Each 8x8 image is read as 8 time steps of 8 features.  Prints ``test_accuracy=...`` last.
Run: ``python examples/seed_example.py``
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import lstmlab as ll


def main() -> None:
    torch.manual_seed(0)
    digits = load_digits()
    x = digits.images.astype(np.float32)                  # (1797, 8, 8): 8 steps x 8 features
    y = np.eye(10, dtype=np.float32)[digits.target]        # one-hot for categorical_crossentropy
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.25, random_state=0,
                                                        stratify=digits.target)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-2    # per-pixel scaling, fitted on train only
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
    model = ll.Sequential([
        ll.LSTM(128, return_sequences=True),
        ll.LSTM(64),
        ll.Dense(10, activation="softmax"),
    ])
    model.compile(loss="categorical_crossentropy", optimizer=ll.Adam(learning_rate=3e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=10, batch_size=32, validation_split=0.1, verbose=2, seed=0)
    model.summary()
    loss, acc = model.evaluate(x_test, y_test)
    print(f"test_loss={loss:.4f}")
    print(f"test_accuracy={acc:.4f}")


if __name__ == "__main__":
    main()
