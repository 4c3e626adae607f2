import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirement_lines(lines):
    """Requirement specifiers, without comments or the YAML list marker."""
    return {re.sub(r"^- ", "", line.strip()) for line in lines if line.strip() and not line.strip().startswith("#")}


def test_environment_yml_lists_the_same_pip_packages_as_requirements_txt():
    requirements = requirement_lines((ROOT / "requirements.txt").read_text().splitlines())
    yml = (ROOT / "environment.yml").read_text()
    pip_section = yml.split("- pip:", 1)[1].splitlines()
    conda_pip = requirement_lines(line for line in pip_section if re.match(r"^\s{4,}- ", line))
    assert requirements == conda_pip
    assert "torch>=2.3" in requirements and "-e ." in requirements
