import numpy as np
import pytest

from facefuse.errors import OptionError, Reason, TemplateError
from facefuse.stages.template_bank import TemplateBank
from facefuse.templates import TemplateArtifact, TemplateStore


def artifact(template_id="poster", faces=2, shade=10) -> TemplateArtifact:
    return TemplateArtifact(
        template_id=template_id, version=0, image=np.full((40, 60, 3), shade, np.uint8),
        faces=np.full((faces, 8, 8, 3), shade, np.uint8), meshes=np.zeros((faces, 468, 3), np.float32),
        affines=np.tile(np.eye(2, 3, dtype=np.float32), (faces, 1, 1)), boxes=np.zeros((faces, 5), np.float32),
        source="test",
    )


def test_adding_twice_makes_versions_and_the_newest_serves(tmp_path):
    store = TemplateStore(tmp_path)
    assert store.add(artifact(shade=10)) == 1
    assert store.add(artifact(shade=20)) == 2
    assert store.versions("poster") == [1, 2]
    assert store.load("poster").image[0, 0, 0] == 20
    assert store.info("poster") == {"template_id": "poster", "version": 2, "face_count": 2, "width": 60, "height": 40, "source": "test"}


def test_old_versions_beyond_three_are_pruned(tmp_path):
    store = TemplateStore(tmp_path)
    for _ in range(5):
        store.add(artifact())
    assert store.versions("poster") == [3, 4, 5]


def test_unknown_template_and_face_index_have_their_reasons(tmp_path):
    store = TemplateStore(tmp_path)
    with pytest.raises(TemplateError) as info:
        store.load("missing")
    assert info.value.reason is Reason.TEMPLATE_NOT_FOUND
    store.add(artifact(faces=2))
    with pytest.raises(TemplateError) as info:
        store.load("poster").select(np.array([0, 2]))
    assert info.value.reason is Reason.TEMPLATE_FACE_NOT_FOUND


@pytest.mark.parametrize("bad_id", ["../etc", "UPPER", "", "a" * 65, "with space"])
def test_ids_that_could_escape_the_store_are_refused(tmp_path, bad_id):
    with pytest.raises(OptionError):
        TemplateStore(tmp_path).add(artifact(template_id=bad_id))


def test_the_bank_serves_a_new_version_without_a_restart_and_forgets_removed_ones(tmp_path):
    store = TemplateStore(tmp_path)
    store.add(artifact(shade=10))
    bank = TemplateBank(store)
    assert bank.lookup("poster", np.array([1]))[0] == 1
    store.add(artifact(shade=30))
    version, faces, _meshes, _affines = bank.lookup("poster", np.array([1, 0]))
    assert version == 2 and faces.shape == (2, 8, 8, 3)
    # postprocess asks for the version template_bank resolved: the older one still serves
    # a request that started before the replacement.
    assert bank.get("poster", 2).image[0, 0, 0] == 30 and bank.get("poster", 1).image[0, 0, 0] == 10
    store.remove("poster")
    with pytest.raises(TemplateError):
        bank.lookup("poster", np.array([0]))
    assert store.ids() == []


def test_a_template_removed_and_added_again_serves_its_new_pixels(tmp_path):
    store = TemplateStore(tmp_path)
    store.add(artifact(shade=10))
    bank = TemplateBank(store)
    assert bank.get("poster").image[0, 0, 0] == 10
    store.remove("poster")
    assert store.add(artifact(shade=50)) == 2  # version 1 is never reused
    assert bank.get("poster").image[0, 0, 0] == 50
    assert bank.get("poster", 2).image[0, 0, 0] == 50


def test_a_bank_without_images_serves_faces_and_leaves_the_image_unread(tmp_path):
    store = TemplateStore(tmp_path)
    store.add(artifact(shade=10))
    artifact_read = TemplateBank(store, with_image=False).get("poster")
    assert artifact_read.image.size == 0 and artifact_read.faces[0, 0, 0, 0] == 10
    assert TemplateBank(store).get("poster").image.shape == (40, 60, 3)
