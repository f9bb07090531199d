"""The job system sits below the gateway: the gateway builds it and hands it the call
guard and the Triton pool, so nothing in facefuse.jobs imports facefuse.gateway."""

from __future__ import annotations

import ast
from pathlib import Path

import facefuse.jobs

JOBS = Path(facefuse.jobs.__file__).parent


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_module_of_the_job_system_imports_the_gateway():
    upward = {
        path.name: sorted(m for m in imported_modules(path) if m.split(".")[:2] == ["facefuse", "gateway"])
        for path in sorted(JOBS.glob("*.py"))
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_job_system_imports_without_the_gateway_loaded():
    import subprocess
    import sys

    code = ("import sys, facefuse.jobs.service, facefuse.jobs.worker, facefuse.jobs.store, facefuse.jobs.redis_store; "
            "print(sorted(m for m in sys.modules if m.startswith('facefuse.gateway')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
