"""Project hygiene that CI must hold: lint, and the README's commands matching CI's."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def test_ruff_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).parent / "ruff")
    if not Path(ruff).exists():
        pytest.fail("ruff is a test dependency and must be installed")
    result = subprocess.run([ruff, "check", "--output-format", "concise", str(REPO)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout


def test_ci_runs_the_readme_test_command() -> None:
    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"```sh\n(.+?)\n```", readme)
    serve_command, test_command = commands[0], commands[1]
    assert "lite-csms serve" in serve_command
    assert "pytest" in test_command
    assert test_command in (REPO / ".ci" / "run").read_text()


def test_codecs_folder_is_not_a_python_package() -> None:
    # `codecs` is a standard-library module: a package of that name would shadow it.
    assert not (REPO / "codecs" / "__init__.py").exists()
    import codecs

    assert hasattr(codecs, "lookup")
