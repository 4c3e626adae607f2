"""Binder builds the CPU build of torch and the helpers package: checked on the Dockerfile repo2docker renders."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def dockerfile() -> str:
    rendered = subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug", str(ROOT)],
                              capture_output=True, text=True, check=True, timeout=120)
    return rendered.stdout


def test_binder_installs_its_requirements_after_copying_the_repository(dockerfile):
    copy_repository = dockerfile.index(" src/ ${REPO_DIR}/")
    install = dockerfile.index('pip install --no-cache-dir -r ".binder/requirements.txt"')
    assert copy_repository < install  # `-e .` needs the repository in place
    assert "environment.yml" not in dockerfile  # the root conda file is for conda users, not Binder


def test_binder_requirements_pin_the_cpu_torch_then_add_the_project():
    lines = [line.strip() for line in (ROOT / ".binder" / "requirements.txt").read_text().splitlines()]
    requirements = [line for line in lines if line and not line.startswith("#")]
    assert requirements[0] == "--extra-index-url https://download.pytorch.org/whl/cpu"
    assert requirements[1].startswith("torch==") and requirements[1].endswith("+cpu")
    assert requirements[2:] == ["-r ../requirements.txt"]
    assert "-e ." in (ROOT / "requirements.txt").read_text().splitlines()
