# persist
"""A three-step pipeline to query afterwards: generate -> train -> evaluate.

    python -m autopersist run pipeline.py                 # k = 1, 2, 3; k=2 not evaluated
    python -m autopersist run pipeline.py --k 1 2 3 4     # computes only what is new

See README.md next to this file for the queries to run on the store it leaves.
"""

import argparse
import random

#: Standard deviation of the noise in generated points.
NOISE = 0.25


def generate(seed, n=100):
    """Noisy points on the line y = 3x + 1."""
    rng = random.Random(seed)
    xs = [rng.uniform(-1.0, 1.0) for _ in range(n)]
    return [(x, 3.0 * x + 1.0 + rng.gauss(0.0, NOISE)) for x in xs]


def train(data, k):
    """Fit y = a*x + b with k*20 steps of gradient descent."""
    a = b = 0.0
    for _ in range(k * 20):
        grad_a = sum((a * x + b - y) * x for x, y in data) / len(data)
        grad_b = sum(a * x + b - y for x, y in data) / len(data)
        a, b = a - 0.5 * grad_a, b - 0.5 * grad_b
    return {"a": round(a, 4), "b": round(b, 4)}


def evaluate(model, data):
    """Mean squared error of the model on data."""
    errors = [(model["a"] * x + model["b"] - y) ** 2 for x, y in data]
    return round(sum(errors) / len(errors), 5)


def main():
    parser = argparse.ArgumentParser(description="generate -> train -> evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--skip", type=int, nargs="*", default=[2], help="k values not to evaluate"
    )
    args = parser.parse_args()
    data = generate(args.seed)
    test = generate(args.seed + 100)
    for k in args.k:
        model = train(data, k)
        if k in args.skip:
            print(f"k={k}: {model} (not evaluated)")
        else:
            print(f"k={k}: {model} test mse={evaluate(model, test)}")


if __name__ == "__main__":
    main()
