"""The README's promises stay true: every setting documented, the test command is what CI runs."""

from __future__ import annotations

from workers.settings import REPO_ROOT, settings_table

README = (REPO_ROOT / "README.md").read_text()


def test_readme_documents_every_setting() -> None:
    missing = [env for env, *_ in settings_table() if f"`{env}`" not in README]
    assert missing == []


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "exec make test" in ci
