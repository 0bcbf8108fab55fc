# persist
"""Data preparation steps (a marked module imported by pipeline.py)."""

import random

#: Changing this constant recomputes exactly the calls that read it.
NOISE = 0.1


def generate(seed, n=200):
    rng = random.Random(seed)
    return [(x, 2.0 * x + 1.0 + rng.gauss(0, NOISE)) for x in (rng.random() for _ in range(n))]


def split(data, fraction=0.8):
    cut = int(len(data) * fraction)
    return data[:cut], data[cut:]
