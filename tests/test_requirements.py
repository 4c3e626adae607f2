"""Two install sets: requirements.txt for readers (the notebooks, run or tested), requirements-dev.txt for developers
(requirements.txt plus the development tools); environment.yml is the reader's set for conda."""

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
DEV_TOOLS = {"ruff", "mutmut", "jupyter-repo2docker"}  # lint, mutation testing, the Binder check


def requirement_lines(lines) -> list[str]:
    """Requirement specifiers and options, without comments or the YAML list marker."""
    return [re.sub(r"^- ", "", line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")]


def names(lines) -> set[str]:
    """The packages the lines name; options such as `-e .` and `-r file` left out."""
    return {canonicalize_name(Requirement(line).name) for line in requirement_lines(lines) if not line.startswith("-")}


def read(path: str) -> list[str]:
    return (ROOT / path).read_text().splitlines()


def test_requirements_txt_holds_what_the_notebooks_need_and_no_development_tool():
    reader = names(read("requirements.txt"))
    assert not reader & DEV_TOOLS
    assert {"torch", "sentence-transformers", "jupyterlab", "ipykernel", "nbval", "pytest"} <= reader
    assert "-e ." in requirement_lines(read("requirements.txt"))  # the helpers package


def test_requirements_dev_txt_is_requirements_txt_plus_the_development_tools():
    lines = requirement_lines(read("requirements-dev.txt"))
    assert lines[0] == "-r requirements.txt"
    added = names(lines[1:])
    assert DEV_TOOLS <= added
    assert not added & names(read("requirements.txt"))  # each package in one place
    assert all(not line.startswith("-") for line in lines[1:])


def test_the_packages_dependencies_are_in_requirements_txt_with_the_same_ranges():
    tomllib = pytest.importorskip("tomllib")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    lines = requirement_lines(read("requirements.txt"))
    reader = {str(Requirement(line)) for line in lines if not line.startswith("-")}
    assert {str(Requirement(dependency)) for dependency in dependencies} <= reader


def test_environment_yml_lists_the_same_pip_packages_as_requirements_txt():
    requirements = requirement_lines(read("requirements.txt"))
    yml = (ROOT / "environment.yml").read_text()
    pip_section = yml.split("- pip:", 1)[1].splitlines()
    conda_pip = requirement_lines(line for line in pip_section if re.match(r"^\s{4,}- ", line))
    assert sorted(requirements) == sorted(conda_pip)
    assert "torch>=2.3" in requirements and "-e ." in requirements
