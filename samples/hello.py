# persist
"""The quickstart: run it twice; the second run computes nothing.

    python -m autopersist run hello.py
    python -m autopersist run hello.py      # instant: every call is reused
"""

import time


def slow_square(x):
    time.sleep(0.3)  # stands for real work
    return x * x


def total(n):
    return sum(slow_square(i) for i in range(n))


def main():
    print("squares:", [slow_square(i) for i in range(4)])
    print("total:", total(4))


if __name__ == "__main__":
    main()
