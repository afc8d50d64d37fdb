"""The documentation's promises stay true: every setting documented, the test command is what CI runs, the README
stays a page to read and its links lead somewhere."""

from __future__ import annotations

import re

from workers.core.settings import REPO_ROOT, readme_table, settings_table

README = (REPO_ROOT / "README.md").read_text()
CONFIGURATION = (REPO_ROOT / "docs" / "configuration.md").read_text()


def test_the_configuration_page_documents_every_setting_once() -> None:
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \|", CONFIGURATION, flags=re.MULTILINE)
    assert sorted(rows) == sorted(env for env, *_ in settings_table())


def test_the_configuration_table_is_the_one_the_code_generates() -> None:
    assert readme_table() in CONFIGURATION, (
        "regenerate it: python -c 'from workers.core.settings import readme_table; print(readme_table())'")


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in README and "exec make test" in ci


def test_the_readme_is_short_and_reaches_its_first_command_within_a_screenful() -> None:
    lines = README.splitlines()
    assert len(lines) <= 160, f"{len(lines)} lines: details belong in docs/"
    first = next(i for i, line in enumerate(lines) if line.startswith("make demo"))
    assert first <= 45, f"the first command is on line {first + 1}"
    assert not re.search(r"\bissue \d+|\bit was \d", README), "no issue numbers or history in the README"


def test_every_relative_link_of_the_readme_and_docs_leads_to_a_file() -> None:
    pages = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO_ROOT)} -> {target}")
    assert not broken
