"""autopersist's start-up hook for processes started by a run when autopersist is
not installed in site-packages (a source checkout used through ``PYTHONPATH``), so
that ``autopersist-startup.pth`` is not processed. ``autopersist run`` puts this
directory first on ``PYTHONPATH``; with ``AUTOPERSIST=1`` this turns the import hook
on (``autopersist._startup``), then runs the ``sitecustomize`` it shadows, if any.
See docs/durability.md.
"""


def _autopersist_child_startup() -> None:
    import importlib
    import importlib.machinery
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    active = os.environ.get("AUTOPERSIST", "").strip().lower()
    if active in ("1", "true", "yes", "on"):
        try:
            importlib.import_module("autopersist._startup")  # turns the hook on
        except ImportError:
            # Not importable from this interpreter's path: use the checkout this
            # file belongs to (hooks/child-startup/ -> the repository root), last.
            sys.path.append(os.path.dirname(os.path.dirname(here)))
            try:
                importlib.import_module("autopersist._startup")
            except ImportError as exc:
                sys.stderr.write(f"autopersist: import hook not installed: {exc}\n")
    # Chain to the sitecustomize this file shadows (site-packages, distribution).
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_autopersist_child_startup()
