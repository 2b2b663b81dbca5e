"""environment.yml (conda, clusters) and pyproject.toml (pip) resolve the same releases.

No conda channel is reachable from the test machines, so this checks the two files
against each other: the same torch pin, the same version floor for every package
both name, and every pip dependency present in the conda environment."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI names
CONDA_TO_PYPI = {"pytorch": "torch", "pytorch-gpu": "torch", "pytorch-cpu": "torch"}


def _environment() -> tuple[dict, dict[str, SpecifierSet], dict[str, SpecifierSet]]:
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep.get("pip", []):
                req = Requirement(line)
                pip[canonicalize_name(req.name)] = req.specifier
            continue
        name, _, rest = dep.partition("=") if "=" in dep and not any(op in dep for op in "<>!") else (dep, "", "")
        if rest:  # conda's "name=1.2" means 1.2.*
            conda[canonicalize_name(CONDA_TO_PYPI.get(name, name))] = SpecifierSet(f"=={rest.lstrip('=')}.*")
        else:
            req = Requirement(dep)
            conda[canonicalize_name(CONDA_TO_PYPI.get(req.name, req.name))] = req.specifier
    return env, conda, pip


def _pyproject() -> tuple[dict[str, SpecifierSet], dict[str, SpecifierSet]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {canonicalize_name(Requirement(r).name): Requirement(r).specifier for r in project["dependencies"]}
    extras = {}
    for group in ("test", "export"):
        for r in project["optional-dependencies"].get(group, []):
            extras[canonicalize_name(Requirement(r).name)] = Requirement(r).specifier
    return runtime, extras


def test_torch_is_the_same_release_in_both():
    env, conda, pip = _environment()
    runtime, _ = _pyproject()
    pins = [s for s in runtime["torch"] if s.operator == "=="]
    assert len(pins) == 1, f"pyproject.toml should pin torch exactly, has {runtime['torch']}"
    torch_env = {**conda, **pip}.get("torch")
    assert torch_env is not None, "environment.yml installs no torch"
    assert str(torch_env) == str(runtime["torch"]), (str(torch_env), str(runtime["torch"]))
    # the deprecated channel and its CUDA meta-package are gone (they stopped at torch 2.5)
    assert "pytorch" not in env["channels"] and "nvidia" not in env["channels"]
    assert "pytorch-cuda" not in conda


def test_every_shared_package_has_the_same_version_floor():
    _, conda, pip = _environment()
    runtime, extras = _pyproject()
    ours = {**runtime, **extras}
    both = sorted(set(ours) & (set(conda) | set(pip)))
    assert len(both) >= len(runtime)
    for name in both:
        env_spec = pip.get(name, conda.get(name))
        assert str(env_spec) == str(ours[name]), f"{name}: environment.yml {env_spec} vs pyproject.toml {ours[name]}"


def test_the_conda_environment_has_every_runtime_dependency():
    _, conda, pip = _environment()
    runtime, _ = _pyproject()
    missing = sorted(set(runtime) - set(conda) - set(pip))
    assert not missing, f"environment.yml lacks {missing} (pyproject.toml dependencies)"


def test_python_version_is_allowed_by_pyproject():
    _, conda, _ = _environment()
    requires = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    env_python = str(conda["python"]).removeprefix("==").removesuffix(".*")
    assert requires.contains(env_python), (env_python, str(requires))
