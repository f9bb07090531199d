"""The release state: reading it never changes anything; the first command that changes
releases creates it (ModelAdmin.state vs ModelAdmin.ensure_initialised). Triton is a stub."""

from __future__ import annotations

import pytest

from facefuse.models_admin.errors import NoReleaseState, ReleaseStateError
from facefuse.models_admin.lifecycle import ModelAdmin
from facefuse.models_admin.releases import ENSEMBLE_NAMES, first_state, load_state, read_audit, save_state
from facefuse.models_admin.versions import VERSIONED_MODELS
from facefuse.settings import Settings


class StubTriton:
    """Version 1 of each network is loaded; version 2 was built after Triton started."""

    def __init__(self):
        self.loaded: list[str] = []

    def ready(self, model: str, version: str = "") -> bool:
        return version == "1"

    def load(self, name: str) -> None:
        self.loaded.append(name)


def files_in(directory) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


@pytest.fixture
def repository(tmp_path):
    for model in VERSIONED_MODELS:
        for version in (1, 2):
            (tmp_path / model / str(version)).mkdir(parents=True)
            (tmp_path / model / str(version) / "model.onnx").write_bytes(b"onnx")
    return tmp_path


def test_reading_the_release_state_before_there_is_one_raises_and_changes_nothing(repository):
    before = files_in(repository)
    admin = ModelAdmin(Settings(model_repository_dir=repository), admin=None, log=lambda *_: None)
    with pytest.raises(NoReleaseState, match="facefuse models publish") as error:
        admin.state()
    assert isinstance(error.value, ReleaseStateError)  # reported by the CLI like the others
    assert files_in(repository) == before


def test_an_existing_release_state_is_read_without_calling_triton(repository):
    saved = first_state({m: 1 for m in VERSIONED_MODELS})
    save_state(repository, saved)
    admin = ModelAdmin(Settings(model_repository_dir=repository), admin=None, log=lambda *_: None)
    assert admin.state().to_json() == saved.to_json()
    assert admin.ensure_initialised().to_json() == saved.to_json()


def test_the_first_use_pins_and_loads_the_versions_triton_serves_then_saves_release_one(repository, monkeypatch):
    triton = StubTriton()
    def write_configs(self, state):
        triton.loaded.append("configs pinned")
        return ["postprocess"]  # a verifying model whose config now names the serving landmarks

    monkeypatch.setattr(ModelAdmin, "_write_configs", write_configs)
    admin = ModelAdmin(Settings(model_repository_dir=repository), admin=triton, log=lambda *_: None)
    state = admin.ensure_initialised()
    assert state.serving == 1 and state.serving_versions() == {**{m: 1 for m in VERSIONED_MODELS}, "template_bank": 1}
    # Pinned before anything loads: "latest" would otherwise pick the newer build.
    assert triton.loaded == ["configs pinned", *VERSIONED_MODELS, "postprocess", *(f"{e}_r1" for e in ENSEMBLE_NAMES),
                             *ENSEMBLE_NAMES]
    assert load_state(repository).to_json() == state.to_json()
    assert [entry["action"] for entry in read_audit(repository)] == ["init"]
    admin.ensure_initialised()  # once only
    assert len(triton.loaded) == 2 + len(VERSIONED_MODELS) + 2 * len(ENSEMBLE_NAMES)
    assert len(read_audit(repository)) == 1
