"""Every import the README documents resolves: code moves, documented paths stay.

The README is read as text: each ``from X import a, b`` line, each dotted name
in double backquotes or quotes that starts with the package, and each handler's
short name. A path that stops importing fails here before it fails a user.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from django.utils.module_loading import import_string

README = Path(__file__).resolve().parent.parent / "README.rst"
PACKAGE = "django_cloudevents_bridge"

FROM_IMPORT = re.compile(rf"^\s*from ({PACKAGE}[\w.]*) import ([\w, ()]+?)\s*$", re.M)
DOTTED = re.compile(rf"[`\"']({PACKAGE}(?:\.\w+)+)[`\"']")


def _text() -> str:
    return README.read_text(encoding="utf-8")


def from_imports() -> list[tuple[str, str]]:
    found = []
    for module, names in FROM_IMPORT.findall(_text()):
        for name in names.strip("()").split(","):
            if name.strip():
                found.append((module, name.strip()))
    return sorted(set(found))


def dotted_names() -> list[str]:
    return sorted(set(DOTTED.findall(_text())))


def test_the_readme_documents_imports() -> None:
    # The scan itself works: a README rewrite must not make this test vacuous.
    assert len(from_imports()) >= 10
    assert len(dotted_names()) >= 4


@pytest.mark.parametrize(("module", "name"), from_imports())
def test_from_import_lines_resolve(module: str, name: str) -> None:
    """As Python resolves ``from X import name``: an attribute, else a submodule."""
    if not hasattr(importlib.import_module(module), name):
        importlib.import_module(f"{module}.{name}")


@pytest.mark.parametrize("dotted", dotted_names())
def test_dotted_names_resolve(dotted: str) -> None:
    try:
        importlib.import_module(dotted)
    except ImportError:
        import_string(dotted)  # an attribute of a module: raises if missing


@pytest.mark.parametrize("short", ["http", "pubsub", "console", "locmem"])
def test_handler_short_names_resolve(short: str) -> None:
    from django_cloudevents_bridge.emit.handlers import SHORT_NAMES, BaseHandler

    assert issubclass(import_string(SHORT_NAMES[short]), BaseHandler)
