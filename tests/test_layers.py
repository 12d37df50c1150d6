"""The package's dependency rules, read from the source: they hold for code not written yet too."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest


def modules(package: str) -> list[str]:
    root = importlib.import_module(package)
    return [package, *(m.name for m in pkgutil.walk_packages(root.__path__, f"{package}."))]


def imported(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def source(module: str) -> Path:
    return Path(inspect.getfile(importlib.import_module(module)))


@pytest.mark.parametrize("module", modules("storage"))
def test_storage_depends_on_the_domain_and_its_errors_only(module: str) -> None:
    ours = {name for name in imported(source(module)) if name.split(".")[0] == "chat"}

    assert ours <= {"chat.domain", "chat.errors"}


@pytest.mark.parametrize("module", [m for m in modules("chat") if not m.startswith("chat.ui")])
def test_only_the_ui_and_app_py_import_gradio(module: str) -> None:
    assert not {name for name in imported(source(module)) if name.split(".")[0] == "gradio"}


@pytest.mark.parametrize("module", modules("chat") + modules("storage"))
def test_every_exception_class_is_in_the_errors_module(module: str) -> None:
    defined = [
        name
        for name, value in vars(importlib.import_module(module)).items()
        if isinstance(value, type) and issubclass(value, BaseException) and value.__module__ == module
    ]

    assert module == "chat.errors" or defined == []
