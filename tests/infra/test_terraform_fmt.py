"""`terraform fmt -check -recursive` over infra/terraform (the binary needs no provider)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from .hcl_config import TERRAFORM


def test_terraform_files_are_formatted():
    terraform = shutil.which("terraform")
    if terraform is None:
        if os.environ.get("CI") == "true":
            pytest.fail("terraform binary not found on PATH; CI must run `terraform fmt -check`")
        pytest.skip("terraform binary not found on PATH (CI runs this check)")
    result = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TERRAFORM)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"terraform fmt would change:\n{result.stdout}{result.stderr}"
