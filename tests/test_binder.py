"""Binder builds the CPU build of torch and the reader's set, pinned: checked on the Dockerfile repo2docker renders
and on the requirements as pip itself reads them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from pip._internal.network.session import PipSession
from pip._internal.req.req_file import parse_requirements

ROOT = Path(__file__).resolve().parents[1]
BINDER = ROOT / ".binder"
DEV_TOOLS = {"ruff", "mutmut", "jupyter-repo2docker"}  # lint, mutation testing, this test


@pytest.fixture(scope="module")
def dockerfile() -> str:
    pytest.importorskip("repo2docker", reason="jupyter-repo2docker is in requirements-dev.txt, not the reader's set")
    rendered = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug", str(ROOT)],
                              capture_output=True, text=True, check=True, timeout=120)
    return rendered.stdout


def parsed(path: Path) -> list:
    """The requirements and constraints of a requirements file, nested files followed as pip follows them."""
    return list(parse_requirements(str(path), session=PipSession()))


def name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def binder_requirements() -> tuple[list[str], dict[str, str]]:
    """What pip installs for Binder: its requirements (`-e .` left out) and {name: constraint}."""
    lines = parsed(BINDER / "requirements.txt")
    requirements = [line.requirement for line in lines if not line.constraint and not line.is_editable]
    constraints = {name(line.requirement): line.requirement for line in lines if line.constraint}
    return requirements, constraints


def test_binder_installs_its_requirements_after_copying_the_repository(dockerfile):
    copy_repository = dockerfile.index(" src/ ${REPO_DIR}/")
    install = dockerfile.index('pip install --no-cache-dir -r ".binder/requirements.txt"')
    assert copy_repository < install  # `-e .` and constraints.txt need the repository in place
    assert "environment.yml" not in dockerfile  # the root conda file is for conda users, not Binder
    assert "requirements-dev.txt" not in dockerfile


def test_binder_requirements_pin_the_cpu_torch_then_add_the_project_under_the_constraints():
    lines = [line.strip() for line in (BINDER / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert requirements[1].startswith("torch==") and requirements[1].endswith("+cpu")
    assert requirements[2:] == ["-c constraints.txt", "-r ../requirements.txt"]
    assert "-e ." in (ROOT / "requirements.txt").read_text().splitlines()


def test_pip_reads_the_constraints_from_the_binder_folder():
    """pip takes a nested file's path relative to the file that names it: `-c constraints.txt` is .binder's."""
    lines = parsed(BINDER / "requirements.txt")
    constraint_sources = {re.sub(r" \(line \d+\)$", "", line.comes_from) for line in lines if line.constraint}
    assert constraint_sources == {f"-c {BINDER / 'constraints.txt'}"}


def test_every_package_binder_installs_is_pinned_within_the_readers_ranges():
    requirements, constraints = binder_requirements()
    assert all(re.fullmatch(r"[\w.-]+==[\w.+!-]+", pin) for pin in constraints.values())  # `pip freeze` lines
    assert requirements[0] == constraints["torch"]  # the CPU torch of .binder/requirements.txt, as tested
    for requirement in requirements:
        package = name(requirement)
        assert package in constraints, f"{package} is not in .binder/constraints.txt: run `make constraints`"
        pinned = next(iter(Requirement(constraints[package]).specifier)).version
        assert Requirement(requirement).specifier.contains(pinned, prereleases=True), (requirement, pinned)


def test_binder_installs_no_development_tool():
    requirements, constraints = binder_requirements()
    dev_only = {name(line.requirement) for line in parsed(ROOT / "requirements-dev.txt") if not line.is_editable}
    dev_only -= {name(line.requirement) for line in parsed(ROOT / "requirements.txt") if not line.is_editable}
    assert DEV_TOOLS <= dev_only  # what requirements-dev.txt adds to the reader's set
    assert not dev_only & {name(requirement) for requirement in requirements}
    assert not dev_only & constraints.keys()  # a freeze of the development venv would pin them
