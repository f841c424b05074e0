"""No documented install puts onnxruntime and onnxruntime-gpu in one environment.

The fast tests read pyproject.toml and every ``pip install`` of this project written in the
README, docs/ and .ci/run; the slow one resolves each of those lines with
``pip install --dry-run --ignore-installed --report`` against the package index.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / ".ci" / "run"]
ONNXRUNTIME = {"onnxruntime", "onnxruntime-gpu"}
# `pip install ... dwpose-ctrl[extras]` or `pip install -e '.[extras]'`, quoted or not
PROJECT_INSTALL = re.compile(
    r"""pip install (?:[^`\n]*?\s)?['"]?(?:dwpose-ctrl|(?<=-e )['"]?\.)(\[[a-z,]+\])?['"]?(?=[\s`]|$)"""
)


def documented_installs() -> dict[str, list[str]]:
    """Extras set (``""``, ``"[cpu]"``, ...) -> the documents that install the project with it."""
    found: dict[str, list[str]] = {}
    for document in DOCUMENTS:
        for line in document.read_text().splitlines():
            for match in PROJECT_INSTALL.finditer(line):
                found.setdefault(match.group(1) or "", []).append(document.name)
    return found


def extras_of(spec: str) -> set[str]:
    return set(spec.strip("[]").split(",")) - {""}


def onnxruntime_names(requirements: list[str]) -> set[str]:
    names = {re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower() for requirement in requirements}
    return names & ONNXRUNTIME


def test_the_runtime_is_an_extra_and_no_other_extra_pulls_one():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert onnxruntime_names(project["dependencies"]) == set()
    extras = project["optional-dependencies"]
    assert onnxruntime_names(extras["cpu"]) == {"onnxruntime"}
    assert onnxruntime_names(extras["gpu"]) == {"onnxruntime-gpu"}
    assert {name for name, requirements in extras.items() if onnxruntime_names(requirements)} == {
        "cpu",
        "gpu",
    }


def test_documented_installs_choose_one_runtime_at_most():
    installs = documented_installs()
    assert "[cpu]" in installs and "README.md" in installs["[cpu]"]  # set-up command 1
    assert (
        "[cpu,torch,diffusers,ray,train,dev]" in installs
        and "run" in installs["[cpu,torch,diffusers,ray,train,dev]"]
    )
    assert "[gpu]" in installs
    for spec in installs:
        assert not {"cpu", "gpu"} <= extras_of(spec), f"{spec} in {installs[spec]} installs both runtimes"


def pypi_reachable() -> bool:
    try:
        with socket.create_connection(("pypi.org", 443), timeout=3):
            return True
    except OSError:
        return False


def resolve(spec: str, report: Path) -> dict[str, str]:
    """What ``pip install ROOT{spec}`` would install into an empty environment: name -> version."""
    command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet"]
    command += ["--no-build-isolation"]  # this project's metadata from the setuptools at hand: faster
    command += ["--report", str(report), f"{ROOT}{spec}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    installed = json.loads(report.read_text())["install"]
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in installed}


@pytest.mark.slow
def test_every_documented_install_resolves_to_one_onnxruntime(tmp_path):
    if not pypi_reachable():
        pytest.skip("needs the package index (pypi.org) to resolve the install lines")
    specs = sorted(documented_installs())
    control = "[cpu,gpu]"  # what the check must catch: both runtimes in one line
    with ThreadPoolExecutor(max_workers=len(specs) + 1) as pool:  # waits on the index, not the CPU
        resolved = dict(
            zip(
                [*specs, control],
                pool.map(
                    lambda item: resolve(item[1], tmp_path / f"{item[0]}.json"), enumerate([*specs, control])
                ),
                strict=True,
            )
        )
    assert set(resolved[control]) & ONNXRUNTIME == ONNXRUNTIME
    for spec in specs:
        runtimes = set(resolved[spec]) & ONNXRUNTIME
        expected = {"cpu": {"onnxruntime"}, "gpu": {"onnxruntime-gpu"}}
        wanted = set().union(*(expected.get(extra, set()) for extra in extras_of(spec)))
        assert runtimes == wanted, f"{spec}: resolves {sorted(runtimes)}"
