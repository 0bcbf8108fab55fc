# persist
"""Where an op still differs from the plain function: the op wrapper.

Each line printed is labelled; ``tests/test_differential.py`` knows which labels
differ in which mode (``KNOWN_GAPS``). The rewriter keeps these identical; the
differences come from the wrapper the runtime puts around an op (an extra Python
frame per call, a code object of its own) and from the mark being a global name.
"""

import inspect
import sys
import traceback
import types
import warnings


def warn_caller(x):
    warnings.warn("called with x", UserWarning, stacklevel=2)
    return x


def caller_name(x):
    return sys._getframe(1).f_code.co_name, x


def depth(n):
    return 0 if n == 0 else 1 + depth(n - 1)


def fails(x):
    return 1 // x


def with_defaults(a, b=2, *, c=3):
    return a + b + c


def report(label, func):
    try:
        print(label, func())
    except BaseException as exc:  # noqa: BLE001
        print(label, "raised", type(exc).__name__)


def run():
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        warn_caller(1)
    report("warning-location", lambda: [(w.filename == __file__, w.lineno) for w in caught])
    report("caller-frame", lambda: caller_name(1))
    report("recursion-300", lambda: depth(300))
    try:
        fails(0)
    except ZeroDivisionError as exc:
        report("traceback-length", lambda: len(traceback.extract_tb(exc.__traceback__)))
    report("code-firstlineno", lambda: with_defaults.__code__.co_firstlineno)
    report("defaults", lambda: (with_defaults.__defaults__, with_defaults.__kwdefaults__))
    report("unwrapped-signature", lambda: str(inspect.signature(with_defaults)))
    report("getfullargspec", lambda: inspect.getfullargspec(with_defaults).args)
    rebuilt = types.FunctionType(inspect.unwrap(fails).__code__, {"__builtins__": __builtins__})
    report("rebuilt-with-other-globals", lambda: rebuilt(1))


if __name__ == "__main__":
    run()
