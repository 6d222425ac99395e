"""The layers import one way (README, *Layout*): import-linter's contracts in pyproject.toml,
checked on the project as it is, and shown to catch what they forbid on a copy of it."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = (
    "companion",
    "care_team",
    "conversations",
    "operations",
    "outreach",
    "scheduling",
    "channels_app",
    "patients",
)
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(project: Path) -> subprocess.CompletedProcess:
    environment = {"PYTHONPATH": str(project), "PATH": "/usr/bin:/bin"}
    command = [str(LINT_IMPORTS), "--no-cache"]
    return subprocess.run(
        command, cwd=project, capture_output=True, text=True, timeout=120, env=environment
    )


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    for package in PACKAGES:
        skipped = shutil.ignore_patterns("__pycache__", "templates", "static")
        shutil.copytree(ROOT / package, tmp_path / package, ignore=skipped)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def add_import(module: Path, statement: str) -> None:
    module.write_text(module.read_text() + f"\n\ndef _added():\n    {statement}\n")


def test_the_layers_and_modules_keep_their_contracts():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


def test_it_refuses_a_lower_layer_importing_a_higher_one(project_copy: Path):
    # The circle this contract ended: delivery reaching up into the bot for its buttons.
    add_import(project_copy / "channels_app" / "base.py", "from scheduling import models")
    result = lint_imports(project_copy)
    assert result.returncode == 1
    assert "Apps import only the layers below them BROKEN" in result.stdout
    assert "channels_app.base -> scheduling.models" in result.stdout


def test_it_refuses_an_app_importing_the_project(project_copy: Path):
    add_import(project_copy / "scheduling" / "dispatch.py", "from companion import celery")
    result = lint_imports(project_copy)
    assert result.returncode == 1
    assert "scheduling.dispatch -> companion.celery" in result.stdout


def test_it_refuses_a_circle_between_modules_of_one_app(project_copy: Path):
    # inbound publishing by importing tasks, which imports inbound: the old circle.
    add_import(project_copy / "conversations" / "inbound.py", "from conversations import tasks")
    result = lint_imports(project_copy)
    assert result.returncode == 1
    assert "No import circle between the modules of an app BROKEN" in result.stdout
