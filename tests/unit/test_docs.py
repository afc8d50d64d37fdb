"""The README's promises stay true: every setting documented, the test command is what CI runs."""

from __future__ import annotations

import re

from workers.core.settings import REPO_ROOT, readme_table, settings_table

README = (REPO_ROOT / "README.md").read_text()


def test_readme_documents_every_setting_once() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", README, flags=re.MULTILINE)
    assert sorted(rows) == sorted(env for env, *_ in settings_table())


def test_the_readme_settings_table_is_the_one_the_code_generates() -> None:
    assert readme_table() in README, (
        "regenerate it: python -c 'from workers.core.settings import readme_table; print(readme_table())'")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "exec make test" in ci
