# persist
"""A three-step pipeline over two marked modules: generate -> train -> evaluate.

    python -m autopersist run pipeline.py          # computes everything
    python -m autopersist run pipeline.py --k 4    # computes only the new model
"""

import argparse

from features import generate, split


def train(data, k):
    """Fit y = a*x + b by gradient descent for k*50 steps."""
    a = b = 0.0
    for _ in range(k * 50):
        grad_a = sum((a * x + b - y) * x for x, y in data) / len(data)
        grad_b = sum((a * x + b - y) for x, y in data) / len(data)
        a, b = a - 0.5 * grad_a, b - 0.5 * grad_b
    return {"a": round(a, 4), "b": round(b, 4)}


def evaluate(model, data):
    error = sum((model["a"] * x + model["b"] - y) ** 2 for x, y in data) / len(data)
    return round(error, 6)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    train_set, test_set = split(generate(seed=0))
    for k in range(1, args.k + 1):
        model = train(train_set, k)
        print(f"k={k} model={model} test mse={evaluate(model, test_set)}")


if __name__ == "__main__":
    main()
