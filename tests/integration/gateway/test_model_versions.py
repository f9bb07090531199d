"""Model versions under live traffic: publish, canary, promote, roll back through the real
gateway and a real Triton, on a copy of the built repository.

Callers fuse through the gateway without pause the whole time; every call must
succeed, and each poster must be entirely one release's (the gateway names it in the
`facefuse-release` trailer, and the poster matches that release's reference poster,
not the other's). A candidate that fails its gate never serves a call.
"""

from __future__ import annotations

import shutil
import threading
import time

import grpc
import numpy as np
import pytest
from candidate_models import darker_fuse, shifted_landmarks, template_returning_fuse
from facefuse_client.v1 import facefuse_pb2 as pb
from facefuse_client.v1 import facefuse_pb2_grpc as pb_grpc
from gateway_helpers import TEMPLATE, running_gateway, target

from facefuse import samples
from facefuse.gateway.routing import RELEASE_HEADER
from facefuse.models_admin import versions
from facefuse.models_admin.errors import AdminCredentialError, GateFailed
from facefuse.models_admin.gates import GateMargins
from facefuse.models_admin.lifecycle import ModelAdmin
from facefuse.models_admin.releases import load_state, read_audit, release_ensemble, serving_model_path
from facefuse.models_admin.triton_admin import TritonAdmin
from facefuse.server.triton import embedded_triton
from facefuse.triton_client import POSTER_OUTPUT, FuseOptions, fusion_inputs, poster_bytes

pytestmark = pytest.mark.slow

ADMIN_KEY = "versions-test-admin-key"
OPTIONS = pb.FuseOptions(fuse_degree=80, profile_degree=50, add_label=False, output_format=pb.PNG)
TRITON_OPTIONS = FuseOptions(fuse_degree=80, profile_degree=50, add_label=False, output_format="png")


@pytest.fixture(scope="module")
def versioned(tmp_path_factory, settings, built_repository, template_store):
    """A copy of the built repository (its own release state), its Triton and gateway."""
    root = tmp_path_factory.mktemp("versions")
    repository, ensembles = root / "model_repository", root / "ensembles"
    # Fresh mtimes (shutil.copy): an age-based /tmp cleaner must not take files mid-test.
    shutil.copytree(settings.model_repository_dir, repository, copy_function=shutil.copy,
                    ignore=shutil.ignore_patterns(".staging-*", ".releases.json", ".audit.jsonl"))
    shutil.copytree(settings.ensembles_dir, ensembles, copy_function=shutil.copy,
                    ignore=shutil.ignore_patterns("*_r[0-9]*"))
    local = settings.model_copy(update={"model_repository_dir": repository, "ensembles_dir": ensembles})
    return local


@pytest.fixture(scope="module")
def stack(versioned, credentials):
    with embedded_triton(versioned, admin_key=ADMIN_KEY) as triton:
        with running_gateway(credentials, [triton.grpc_url], releases_file=versioned.model_repository_dir / ".releases.json") as gateway:
            admin = TritonAdmin(triton.grpc_url, ADMIN_KEY, triton.gateway_key)
            yield triton, gateway, ModelAdmin(versioned, admin, log=lambda *_: None, margins=GateMargins())
            admin.close()


class Callers:
    """Threads fusing through the gateway without pause; they record every outcome."""

    def __init__(self, gateway, api_key: str, photo: bytes, count: int = 3):
        self.gateway, self.metadata, self.photo = gateway, (("x-api-key", api_key),), photo
        self.results: list[tuple[int | None, bytes]] = []  # (release, poster); None: plain ensembles
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        with grpc.insecure_channel(target(self.gateway)) as channel:
            stub = pb_grpc.FaceFusionStub(channel)
            while not self._stop.is_set():
                try:
                    reply, call = stub.Fuse.with_call(
                        pb.FuseRequest(template_id=TEMPLATE, photo=self.photo, options=OPTIONS),
                        metadata=self.metadata, timeout=60)
                    release = dict(call.trailing_metadata()).get(RELEASE_HEADER)
                    self.results.append((int(release) if release else None, reply.poster.image))
                except grpc.RpcError as error:
                    self.errors.append(f"{error.code()}: {error.details()}")

    def releases(self) -> list[int]:
        return [r for r, _ in self.results]

    def wait_for(self, release: int, calls: int, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while self.releases().count(release) < calls:
            assert not self.errors, self.errors[:3]
            assert time.monotonic() < deadline, f"release {release} made {self.releases().count(release)} calls"
            time.sleep(0.05)

    def __enter__(self):
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=90)


def reference_poster(triton, release: int, photo: bytes) -> np.ndarray:
    admin = TritonAdmin(triton.grpc_url, None, triton.gateway_key)
    try:
        result = admin.infer(release_ensemble("face_fusion", release), fusion_inputs(photo, TEMPLATE, 0, TRITON_OPTIONS),
                             POSTER_OUTPUT)
    finally:
        admin.close()
    return samples.rgb(poster_bytes(result)).astype(np.int16)


def distance(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean absolute difference per channel, inside `region` (a boolean mask) when given."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(diff[region].mean() if region is not None else diff.mean())


def face_region(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Where two posters differ: the fused face; elsewhere every poster is the template."""
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).sum(-1) > 6


def test_publish_refuses_callers_without_the_admin_key(stack, versioned, credentials, tmp_path):
    triton, gateway, admin = stack
    repository = versioned.model_repository_dir
    # Release state exists whatever ran before (its first use sets it up, with the key),
    # so the refused caller always goes the whole publish path, and must leave it as it was.
    admin.ensure_initialised()
    state_before, versions_before = load_state(repository), versions.versions(repository, "fuse")
    candidate = darker_fuse(serving_model_path(repository, "fuse"), tmp_path / "darker.onnx")
    wrong = ModelAdmin(versioned, TritonAdmin(triton.grpc_url, "not-the-key", triton.gateway_key), log=lambda *_: None,
                       margins=GateMargins())
    with pytest.raises(AdminCredentialError, match="FACEFUSE_TRITON_ADMIN_KEY"):
        wrong.publish("fuse", source=candidate)
    assert load_state(repository) == state_before
    with Callers(gateway, credentials.full_key, samples.astronaut(), count=1) as callers:
        callers.wait_for(state_before.serving, calls=1)
    assert not callers.errors  # the serving release still serves
    assert versions.versions(repository, "fuse") == versions_before  # the imported version is gone


def test_a_fuse_returning_the_template_fails_its_gate_and_never_serves_a_call(stack, versioned, credentials, tmp_path):
    triton, gateway, admin = stack
    repository = versioned.model_repository_dir
    broken = template_returning_fuse(serving_model_path(repository, "fuse"), tmp_path / "broken.onnx")
    fuse_versions = versions.versions(repository, "fuse")
    with Callers(gateway, credentials.full_key, samples.astronaut()) as callers:
        time.sleep(1)
        # Either the gate measures how little it changes the template, or postprocess's
        # check refuses its posters first (the template's own face, checked against the user's).
        with pytest.raises(GateFailed, match=r"fusion: .* changes the template 0\.\d+x|verification: .*refused") as failed:
            admin.publish("fuse", source=broken)
        time.sleep(1)
    assert not callers.errors, callers.errors[:3]
    assert callers.results and set(callers.releases()) <= {None, 1}, "a call was routed to the failed candidate"
    state = load_state(repository)
    assert state.serving == 1 and state.candidate is None and sorted(state.releases) == [1]
    assert versions.versions(repository, "fuse") == fuse_versions  # the failed version is gone
    assert failed.value.report["passed"] is False
    assert read_audit(repository)[-1]["action"] == "gate-failed"


def test_publish_canary_promote_rollback_under_live_traffic_fails_no_call(stack, versioned, credentials, tmp_path):
    triton, gateway, admin = stack
    repository = versioned.model_repository_dir
    photo = samples.astronaut()
    candidate = darker_fuse(serving_model_path(repository, "fuse"), tmp_path / "darker.onnx")
    with Callers(gateway, credentials.full_key, photo) as callers:
        time.sleep(1)
        release, gate = admin.publish("fuse", source=candidate)
        assert gate["golden"]["passed"] and gate["numerics"]["passed"]
        callers.wait_for(1, 3)
        references = {1: reference_poster(triton, 1, photo), release: reference_poster(triton, release, photo)}
        published_at = len(callers.results)
        admin.canary(release, 40)
        callers.wait_for(release, 3)
        admin.promote(release)
        promoted_at = len(callers.results)
        callers.wait_for(release, callers.releases().count(release) + 15)
        rollback_started = len(callers.results)
        admin.rollback()
        rolled_back_at = len(callers.results)
        callers.wait_for(1, callers.releases().count(1) + 15)
    assert not callers.errors, callers.errors[:3]
    made_by = callers.releases()
    assert set(made_by[:published_at]) <= {None, 1}, "the candidate served before its canary"
    assert set(made_by) - {None} == {1, release}
    # Once promote (or rollback) returned, the gateway has re-read the state: apart from
    # the few calls already in flight (3 callers), every call is the new serving release's.
    assert made_by[promoted_at + 6:rollback_started].count(1) == 0
    assert made_by[rolled_back_at + 6:].count(release) == 0
    region = face_region(references[1], references[release])
    assert region.sum() > 1000 and distance(references[1], references[release], region) > 8  # told apart
    for number, image in callers.results:
        number = number or 1  # the plain ensembles (before anything was published) serve release 1's versions
        poster = samples.rgb(image)
        own, other = (distance(poster, references[r], region) for r in (number, ({1, release} - {number}).pop()))
        assert own < 2.0 and other > 6.0, \
            f"a poster of release {number} is {own:.2f} from its reference, {other:.2f} from the other's"
    state = load_state(repository)
    assert (state.serving, state.previous, state.candidate) == (1, release, None)
    actions = [e["action"] for e in read_audit(repository)]
    assert actions[-4:] == ["publish", "canary", "promote", "rollback"]
    assert all(e["by"] for e in read_audit(repository))

    # The photo bench's statistics after a publish: summed over the two versions of the
    # model that runs fuse (the cpu profile's fuse_faces step follows fuse's versions).
    from facefuse.bench.photo import _stage_statistics
    from facefuse.triton_client import fusion_stages

    stages = fusion_stages(triton.client())
    fusing = "fuse_faces" if "fuse_faces" in stages else "fuse"
    raw = [m for m in triton.client().get_inference_statistics(as_json=True)["model_stats"] if m["name"] == fusing]
    assert len({m["version"] for m in raw}) >= 2
    assert _stage_statistics(triton.client(), stages)[fusing]["requests"] == \
        sum(int(m["inference_stats"].get("success", {}).get("count", 0)) for m in raw) > 0


def test_a_restarted_server_serves_the_promoted_release_not_the_newest_version(stack, versioned):
    triton, _, admin = stack
    state = load_state(versioned.model_repository_dir)
    assert state is not None and state.previous is not None, "runs after the live-traffic test"
    admin.promote(state.previous)  # serve the darker release again
    state = load_state(versioned.model_repository_dir)
    photo = samples.astronaut()
    served = reference_poster(triton, state.serving, photo)
    admin.rollback()  # release 1 serves; the newest fuse version stays on disk, loaded for roll-forward
    state = load_state(versioned.model_repository_dir)
    assert state.serving == 1
    assert max(versions.versions(versioned.model_repository_dir, "fuse")) > state.serving_versions()["fuse"]
    with embedded_triton(versioned, admin_key=ADMIN_KEY) as restarted:
        plain = TritonAdmin(restarted.grpc_url, None, restarted.gateway_key)
        try:
            poster = samples.rgb(poster_bytes(plain.infer(
                "face_fusion", fusion_inputs(photo, TEMPLATE, 0, TRITON_OPTIONS), POSTER_OUTPUT)))
        finally:
            plain.close()
        release_1 = reference_poster(restarted, 1, photo)
        region = face_region(release_1, served)
        assert distance(poster, release_1, region) < 2.0
        assert distance(poster, served, region) > 6.0


def test_a_landmark_model_off_by_pixels_fails_its_gate_and_never_serves_a_call(stack, versioned, credentials, tmp_path):
    triton, gateway, admin = stack
    repository = versioned.model_repository_dir
    serving = load_state(repository).serving_versions()
    shifted = shifted_landmarks(repository / "face_landmarks" / str(serving["face_landmarks"]) / "model.onnx",
                                tmp_path / "shifted.onnx")
    with Callers(gateway, credentials.full_key, samples.astronaut()) as callers:
        with pytest.raises(GateFailed, match=r"face mesh: points [4-9]\.\d+ px from the serving mesh"):
            admin.publish("face_landmarks", source=shifted)
        time.sleep(1)
    assert not callers.errors, callers.errors[:3]
    assert callers.results and set(callers.releases()) == {load_state(repository).serving}
    state = load_state(repository)
    assert state.candidate is None
    assert versions.versions(repository, "face_landmarks") == [serving["face_landmarks"]]
    assert [p.name for p in (repository / "template_bank").iterdir() if p.name.isdigit()] == ["1"]


def test_a_landmarks_swap_serves_templates_analysed_by_the_candidate(stack, versioned, credentials, template_store, tmp_path):
    triton, gateway, admin = stack
    repository = versioned.model_repository_dir
    serving = load_state(repository).serving_versions()
    copy = shutil.copyfile(repository / "face_landmarks" / str(serving["face_landmarks"]) / "model.onnx",
                           tmp_path / "same-landmarks.onnx")
    release, gate = admin.publish("face_landmarks", source=copy)
    state = load_state(repository)
    pinned = state.releases[release].versions
    assert pinned["face_landmarks"] != serving["face_landmarks"] and pinned["template_bank"] != 1
    key = f"d{pinned['face_detector']}-l{pinned['face_landmarks']}"
    for template_id in template_store.ids():  # every template analysed for the candidate before it took a call
        assert template_store.analysis_path(template_id, template_store.latest_version(template_id), key).is_file()
    assert gate["templates"][TEMPLATE]["mesh_shift_px"] < 0.01  # the same network: the same meshes
    with Callers(gateway, credentials.full_key, samples.astronaut()) as callers:
        admin.canary(release, 100)
        callers.wait_for(release, 3)
        admin.rollback()  # discards the candidate
        callers.wait_for(state.serving, callers.releases().count(state.serving) + 3)
    assert not callers.errors, callers.errors[:3]
    state = load_state(repository)
    assert state.candidate is None and release not in state.releases
    assert not (repository / "template_bank" / str(pinned["template_bank"])).exists()


def verification_landmarks(triton) -> dict[str, str]:
    """The face_landmarks version each loaded verifying model judges posters with."""
    client = triton.client()
    return {name: client.get_model_config(name, as_json=True)["config"]["parameters"][versions.VERIFICATION_LANDMARKS]
            ["string_value"] for name in versions.VERIFYING_MODELS if client.is_model_ready(name)}


def test_the_verification_moves_to_a_landmarks_release_when_it_is_promoted_and_back_on_rollback(
        stack, versioned, credentials, tmp_path):
    triton, gateway, admin = stack
    repository = versioned.model_repository_dir
    admin.ensure_initialised()
    old = str(load_state(repository).serving_versions()["face_landmarks"])
    assert set(verification_landmarks(triton).values()) == {old}
    copy = shutil.copyfile(repository / "face_landmarks" / old / "model.onnx", tmp_path / "same-landmarks.onnx")
    with Callers(gateway, credentials.full_key, samples.astronaut()) as callers:
        release, _ = admin.publish("face_landmarks", source=copy)
        new = str(load_state(repository).releases[release].versions["face_landmarks"])
        admin.canary(release, 100)
        callers.wait_for(release, 3)
        assert set(verification_landmarks(triton).values()) == {old}  # a candidate does not judge
        admin.promote(release)
        callers.wait_for(release, callers.releases().count(release) + 3)
        assert set(verification_landmarks(triton).values()) == {new}
        admin.rollback()
        callers.wait_for(load_state(repository).serving, callers.releases().count(load_state(repository).serving) + 3)
        assert set(verification_landmarks(triton).values()) == {old}
    assert not callers.errors, callers.errors[:3]
