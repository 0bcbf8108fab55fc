"""The finder searches a package's directories for project modules only where
project files can be: library submodules are not looked up twice."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pytest

from autopersist._importhook import PersistFinder


@pytest.mark.parametrize(
    ("entry", "near"),
    [
        ("/work/proj/pkg", True),  # a package of the project
        ("/work/proj", True),
        ("/work", True),  # holds the project: a subpackage may be the root
        ("/work/proj/../proj/pkg", True),
        ("/work/project2/pkg", False),  # a name that merely starts like the root
        ("/usr/lib/python3/site-packages/numpy", False),
        (b"/work/proj/pkg", True),  # not a str: PathFinder decides
    ],
)
def test_package_directories_that_may_hold_project_files(entry, near):
    finder = PersistFinder(SimpleNamespace(root="/work/proj" + os.sep))  # type: ignore[arg-type]
    assert finder._may_hold_project_files(entry) is near


def test_submodule_of_a_library_package_is_left_to_the_path_finder(monkeypatch):
    finder = PersistFinder(SimpleNamespace(root="/work/proj" + os.sep))  # type: ignore[arg-type]

    def searched(*args: object) -> None:
        raise AssertionError("searched")

    monkeypatch.setattr("autopersist._importhook.PathFinder.find_spec", searched)
    assert finder.find_spec("numpy.core", ["/usr/lib/site-packages/numpy"]) is None
    with pytest.raises(AssertionError, match="searched"):
        finder.find_spec("pkg.mod", ["/work/proj/pkg"])
