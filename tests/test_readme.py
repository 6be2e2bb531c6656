"""The README is valid reStructuredText and documents every setting the code reads."""

from __future__ import annotations

import re
from pathlib import Path

import docutils.core
import docutils.utils

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.rst").read_text()


def test_readme_is_valid_restructuredtext():
    docutils.core.publish_doctree(
        README, settings_overrides={"report_level": 5, "halt_level": 2}
    )


def test_every_setting_read_by_the_code_is_in_the_settings_table():
    code = "\n".join(
        path.read_text() for path in (ROOT / "django_cloudevents_bridge").rglob("*.py")
    )
    settings = set(re.findall(r'"(CLOUDEVENTS_[A-Z_]+)"', code))
    table = README[README.index("Settings\n========") :]
    missing = {name for name in settings if f"``{name}``" not in table}
    assert settings and not missing


def test_readme_opens_with_the_two_commands():
    top = README[: README.index(".. contents::")]
    assert "make demo" in top and "make test" in top
