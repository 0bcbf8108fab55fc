"""A function reports that it ran once per op call, then only checks a flag
(``__autopersist_unseen__[i] and __autopersist_mark__(i)``). These scripts call
helpers many times from several ops, nested ops, plain code between op calls and
threads; after a helper changes, every call that ran it must recompute, and only
those: a flag left down where the op call's set lacks the key would make a stale
call look valid."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from autopersist._config import load_config
from autopersist._names import MARK_NAME, UNSEEN_NAME
from autopersist._runtime import Runtime
from autopersist._storage import Storage
from tests.conftest import Project
from tests.test_import_cache import ROWS, SOURCE

WORK = """
# persist
def helper(x):  # persist: skip
    return x + 1


def other(x):  # persist: skip
    return x * 2


def first(x):
    total = 0
    for _ in range(50):
        total += helper(x)
    return total


def second(x):
    return helper(x) + other(x)


def inner(x):
    return other(x) + 1


def outer(x):
    a = helper(x)
    b = inner(x)
    return a + b + helper(x)


def only_other(x):
    return other(x)
"""

MAIN = """
import work

helper_before = work.helper(0)  # plain code outside any op marks it first
print([work.first(i) for i in range(20)])
print([work.second(i) for i in range(20)])
print([work.outer(i) for i in range(20)])
print([work.only_other(i) for i in range(20)])
"""


def _run_like_plain(project: Project, main: str) -> dict[str, int]:
    """Run ``main`` under autopersist: the same output as plain Python."""
    plain = project.python(main)
    assert plain.returncode == 0, plain.stderr
    ran = project.run(main)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == plain.stdout
    return ran.counts()


def test_every_caller_of_a_changed_helper_recomputes_and_no_other(
    project: Project,
) -> None:
    project.write("work.py", WORK)
    project.write("main.py", MAIN)
    # first, second, outer, only_other; inner
    assert _run_like_plain(project, "main.py")["computed"] == 20 * 4 + 20
    # Top-level calls only: a reused outer does not run inner.
    assert _run_like_plain(project, "main.py")["reused"] == 20 * 4

    # (Each edit changes the file's size: plain Python's own bytecode cache trusts
    # a file whose size and modification second are unchanged.)
    # helper changes: first, second and outer recompute, not inner nor only_other.
    project.write("work.py", WORK.replace("return x + 1", "return x + 22"))
    counts = _run_like_plain(project, "main.py")
    assert (counts["computed"], counts["reused"]) == (20 * 3, 20 + 20)

    # other changes: second, outer (through inner), inner and only_other recompute.
    project.write(
        "work.py",
        WORK.replace("return x + 1", "return x + 22").replace(
            "return x * 2", "return x * 33"
        ),
    )
    counts = _run_like_plain(project, "main.py")
    assert (counts["computed"], counts["reused"]) == (20 * 4, 20)


THREADS = """
# persist
import sys
import threading


def helper(x):  # persist: skip
    return x + 1


def threaded(x):
    a = helper(x)
    for _ in range(300):  # time for other threads to begin and end calls
        x = x + 0
    return a + x


def run_threads(count):  # persist: skip
    out = [0] * 4

    def work(k):
        for i in range(count):
            out[k] += threaded(k * 1000 + i)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return out


sys.setswitchinterval(1e-6)  # threads take turns inside op calls
print(run_threads(100))
"""


def test_calls_on_several_threads_keep_their_dependencies(project: Project) -> None:
    # Threads share one record of what ran. Each call must still find there
    # everything its own code ran (more is allowed: it may recompute more).
    project.write("threads.py", THREADS)
    assert _run_like_plain(project, "threads.py")["computed"] == 400
    project.write("threads.py", THREADS.replace("return x + 1", "return x + 22"))
    # A call stored without helper among its dependencies would be reused here.
    assert _run_like_plain(project, "threads.py")["computed"] == 400


RACE = """
# persist
import threading

helper_ran = threading.Event()
other_began = threading.Event()
slow_ended = threading.Event()


def helper(x):  # persist: skip
    return x + 1


def slow(x):
    a = helper(x)
    helper_ran.set()
    other_began.wait(10)  # another thread begins a computed call meanwhile
    return a


def fast(x):
    other_began.set()
    slow_ended.wait(10)  # slow ends while this call runs
    return x


def main():  # persist: skip
    out = {}

    def run_slow():
        out["slow"] = slow(1)
        slow_ended.set()

    thread = threading.Thread(target=run_slow)
    thread.start()
    helper_ran.wait(10)
    out["fast"] = fast(2)
    other_began.set()  # (fast is reused in the second run)
    thread.join()
    print(sorted(out.items()))


main()
"""


def test_a_call_beginning_on_another_thread_keeps_the_running_calls_dependencies(
    project: Project,
) -> None:
    # slow(1) has run helper when fast(2) begins on the main thread. Emptying the
    # shared record of what ran for fast's sake dropped helper from slow's
    # dependencies, so slow(1) was reused after helper changed.
    project.write("race.py", RACE)
    first = project.run("race.py")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "[('fast', 2), ('slow', 2)]\n"
    assert first.counts()["computed"] == 2
    project.write("race.py", RACE.replace("return x + 1", "return x + 11"))
    second = project.run("race.py")
    assert second.stdout == "[('fast', 2), ('slow', 12)]\n"
    # fast began while slow was running on another thread, so it recorded what
    # had run so far (helper) too: it may recompute more, never less (README).
    assert second.counts()["computed"] == 2


RELOADED_V1 = """
# persist
def a(x):  # persist: skip
    return x


def b(x):  # persist: skip
    return x


def c(x):  # persist: skip
    return x


def helper(x):  # persist: skip
    return x + 1


def run(x):
    return helper(x) * 2
"""

RELOADED_V2 = """
# persist
HOOK = None


def run_hook(x):
    return HOOK(x) + 100
"""

RELOAD_MAIN = """
import importlib
import pathlib

import work

print(work.run(1))
old_helper = work.helper
pathlib.Path("work.py").write_text(pathlib.Path("v2.txt").read_text())
importlib.reload(work)
work.HOOK = old_helper  # the first version's function, at index 3 of its table
print(work.run_hook(5), work.run_hook(6))
"""


def test_functions_of_a_module_version_replaced_by_reload_still_report(
    project: Project,
) -> None:
    # After a reload of edited code, the first version's functions read the
    # second version's flags at their own indexes (here past its end).
    for name, text in (("main.py", RELOAD_MAIN), ("v2.txt", RELOADED_V2)):
        project.write(name, text)
    project.write("work.py", RELOADED_V1)
    plain = project.python("main.py")
    assert plain.returncode == 0, plain.stderr
    project.write("work.py", RELOADED_V1)
    ran = project.run("main.py")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == plain.stdout == "4\n106 107\n"
    assert ran.counts()["computed"] == 3


# -- a mark and the start of an op call on another thread ------------------------------


class _EmptiedDuringRecord(list):  # type: ignore[type-arg]
    """``Runtime._marked`` whose first ``append`` (a mark recording its flag) lets
    another thread begin a computed call, which empties ``seen`` and raises the
    recorded flags, before the mark goes on, if nothing keeps it out."""

    def __init__(self, runtime: Runtime) -> None:
        super().__init__()
        self.runtime = runtime
        self.emptied = threading.Event()
        self.thread: threading.Thread | None = None

    def append(self, item: object) -> None:
        super().append(item)
        if self.thread is None:
            self.thread = threading.Thread(target=self._begin_a_call)
            self.thread.start()
            self.emptied.wait(0.5)  # the fixed mark keeps it waiting: times out

    def _begin_a_call(self) -> None:
        runtime = self.runtime
        runtime._open_span(runtime._threads.state)
        runtime._open.pop()  # (the call ends at once)
        self.emptied.set()


@pytest.mark.parametrize("marking", ["the thread that made the runtime", "another"])
def test_a_call_beginning_during_a_mark_leaves_no_flag_down_unrecorded(
    tmp_path: Path, marking: str
) -> None:
    # A flag down with no record is never raised again: the function would not
    # report in any later op call of the process, which would lack it as a
    # dependency (and be reused after it changed).
    store = tmp_path / "store"
    runtime = Runtime(load_config(store), Storage(store), "r1")
    try:
        hooked = runtime._marked = _EmptiedDuringRecord(runtime)
        source = tmp_path / "mod.py"
        source.write_text(SOURCE, encoding="utf-8")
        state = runtime.new_module("mod", {"__name__": "mod"}, str(source))
        state.register("P", ROWS)
        mark, unseen = state.namespace[MARK_NAME], state.namespace[UNSEEN_NAME]
        if marking == "another":
            thread = threading.Thread(target=mark, args=("P:1",))
            thread.start()
            thread.join()
        else:
            mark("P:1")
        assert hooked.thread is not None
        hooked.thread.join()
        assert hooked.emptied.is_set()
        recorded = {index for flags, index in runtime._marked if flags is unseen}
        for index, up in enumerate(unseen):
            if not up:
                assert index in recorded and f"P:{index}" in runtime.seen
        # The next op call starts with every function reporting again.
        runtime._open_span(runtime._threads.state)
        runtime._open.pop()
        assert all(unseen)
    finally:
        runtime.storage.close()


def test_an_interrupt_in_the_start_of_a_call_leaves_other_threads_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Ctrl-C delivered while the main thread begins a call without the lock must
    # not leave it announced as busy: the next thread to begin a call waits for
    # that announcement to end, and would wait forever.
    store = tmp_path / "store"
    runtime = Runtime(load_config(store), Storage(store), "r1")
    try:
        begin = runtime._open_span_now

        def interrupted(own: int) -> set[str]:
            raise KeyboardInterrupt

        monkeypatch.setattr(runtime, "_open_span_now", interrupted)
        with pytest.raises(KeyboardInterrupt):
            runtime._open_span(runtime._threads.state)
        monkeypatch.setattr(runtime, "_open_span_now", begin)
        began = threading.Event()

        def other_thread() -> None:
            runtime._open_span(runtime._threads.state)
            runtime._open.pop()
            began.set()

        threading.Thread(target=other_thread, daemon=True).start()
        assert began.wait(10)
    finally:
        runtime.storage.close()
