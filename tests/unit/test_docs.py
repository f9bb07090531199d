"""The documentation: the site builds strictly (a broken link or anchor fails), the
generated references cover every setting and every part of the proto, and the README
and the pages name only settings, files and make targets that exist."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from facefuse_client.v1 import facefuse_pb2

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "docs" / "hooks"))

import proto_reference  # noqa: E402
import settings_reference  # noqa: E402

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), ROOT / "ensembles" / "README.md",
         ROOT / "loadtest" / "README.md"]


def test_the_site_builds_strictly_so_a_broken_link_fails(tmp_path):
    mkdocs = Path(sys.executable).parent / "mkdocs"
    build = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=ROOT,
                           capture_output=True, text=True, timeout=300, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})
    assert build.returncode == 0, build.stdout + build.stderr
    configuration = (tmp_path / "site" / "running" / "configuration" / "index.html").read_text()
    assert "FACEFUSE_GATEWAY_HEDGE_DELAY_MS" in configuration  # the generated tables made it into the page
    assert "FuseManyRequest" in (tmp_path / "site" / "calling" / "api-reference" / "index.html").read_text()
    assert "fuse_many" in (tmp_path / "site" / "calling" / "sdk" / "index.html").read_text()


def test_the_settings_classes_found_in_the_source_are_every_settings_class():
    found = {(c.module, c.name) for c in settings_reference.settings_classes()}
    assert {("facefuse.settings", "Settings"), ("facefuse.gateway.settings", "GatewaySettings"),
            ("facefuse.video.settings", "VideoSettings")} <= found
    for module, name in found:
        assert issubclass(getattr(importlib.import_module(module), name), BaseSettings)


def test_every_setting_of_every_settings_class_appears_on_the_configuration_page():
    page = settings_reference.render()
    for cls in settings_reference.settings_classes():
        real = getattr(importlib.import_module(cls.module), cls.name)
        prefix = real.model_config.get("env_prefix", "")
        assert prefix == cls.prefix
        assert {s.name for s in cls.settings} == set(real.model_fields), f"{cls.name}: fields read from the source differ"
        for field in real.model_fields:
            assert f"`{(prefix + field).upper()}`" in page, f"{cls.name}.{field} is missing from the configuration page"


def test_every_rpc_message_field_and_enum_value_of_the_proto_appears_in_the_api_reference():
    page = proto_reference.render()
    file = facefuse_pb2.DESCRIPTOR
    for service in file.services_by_name.values():
        assert f"### {service.name} " in page
        for method in service.methods:
            assert f"| `{method.name}` |" in page
    for message in file.message_types_by_name.values():
        assert f"### {message.name} " in page
        for field in message.fields:
            assert f"| `{field.name}` | {field.number} |" in page, f"{message.name}.{field.name}"
    for enum in file.enum_types_by_name.values():
        for value in enum.values:
            assert f"| `{value.name}` | {value.number} |" in page


def test_the_api_reference_keeps_the_proto_comments():
    page = proto_reference.render()
    assert "Echoed back; generated when empty." in page  # a field's comment
    assert "Templates the caller may use." in page  # an RPC's comment
    assert 'google.rpc.ErrorInfo (domain "facefuse.v1"' in page  # the file's own comment


def test_every_facefuse_variable_the_docs_name_exists():
    settings = {s.env for c in settings_reference.settings_classes() for s in c.settings}
    source = "\n".join(p.read_text() for d in ("src", "client/src", "loadtest") for p in (ROOT / d).rglob("*.py"))
    read_by_tools = set(re.findall(r"[\"'](FACEFUSE_[A-Z0-9_]+)[\"']", source))
    prefixes = {c.prefix for c in settings_reference.settings_classes()}
    for page in PAGES:
        for name in set(re.findall(r"FACEFUSE_[A-Z0-9_]*[A-Z0-9](?:_\*)?", page.read_text())):
            if name.endswith("_*"):  # a family: FACEFUSE_GATEWAY_METRICS_*
                assert any(s.startswith(name[:-1]) for s in settings), f"{page.name}: {name} matches no setting"
            else:
                assert name in settings or name in read_by_tools or name + "_" in prefixes, \
                    f"{page.relative_to(ROOT)} names {name}, which no settings class or tool reads"


def test_the_error_page_lists_every_reason_with_its_status_and_sdk_exception():
    from facefuse_client.errors import _CLASSES, FacefuseError

    from facefuse.errors import Reason
    from facefuse.gateway.errors import STATUS_OF_REASON

    rows = {}
    for line in (ROOT / "docs" / "calling" / "errors.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| `") and len(cells) == 5:
            rows[cells[0].strip("`")] = cells
    for reason in Reason:
        assert reason.value in rows, f"docs/calling/errors.md lacks {reason.value}"
        _, status, _, exception, _ = rows[reason.value]
        assert status == STATUS_OF_REASON[reason].name, f"{reason.value}: the page says {status}"
        assert exception == f"`{_CLASSES.get(reason.value, FacefuseError).__name__}`", f"{reason.value}: {exception}"


def test_the_readme_fits_on_two_screens_and_its_links_point_at_files():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    for link in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not link.startswith("http"):
            assert (ROOT / link).exists(), f"README links to {link}, which does not exist"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_make_target_the_docs_name_exists(page):
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][a-z-]*):", makefile, re.M))
    for target in re.findall(r"`make ([a-z][a-z-]*)", page.read_text()) + re.findall(r"^make ([a-z][a-z-]*)", page.read_text(), re.M):
        assert target in targets, f"{page.name} names `make {target}`, which the Makefile lacks"


def test_docs_serve_listens_on_loopback_only():
    serve = re.search(r"^docs-serve:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.M).group(1)
    assert "--dev-addr 127.0.0.1:" in serve
