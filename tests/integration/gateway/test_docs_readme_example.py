"""The README's example call, run as written against the real gateway (only the address
differs: the test's gateway listens on a free port, the README's on 50051)."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

from gateway_helpers import target

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_example() -> str:
    section = README.read_text().split("## Call it", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_fuses_a_selfie_through_the_gateway(gateway, credentials, astronaut, tmp_path, monkeypatch):
    code = readme_example()
    assert '"127.0.0.1:50051"' in code
    script = tmp_path / "example.py"
    script.write_text(code.replace('"127.0.0.1:50051"', repr(target(gateway))))
    (tmp_path / "selfie.jpg").write_bytes(astronaut)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FACEFUSE_API_KEY", credentials.full_key)
    runpy.run_path(str(script), run_name="__main__")
    assert (tmp_path / "poster.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
