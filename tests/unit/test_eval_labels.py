import json

import pytest

from facefuse.eval import labels


def _labels_file(path, entries, fmt=labels.FORMAT):
    path.write_text(json.dumps({"format": fmt, "labels": entries}))
    return path


def _entry(case="laughing-obama", template="hopper-portrait", degrees="80/50", sha256="aa", publishable=True,
           defects=()):
    return {"case": case, "template": template, "degrees": degrees, "sha256": sha256,
            "publishable": publishable, "defects": list(defects)}


def _record(case="laughing-obama", kind="laughing", template="hopper-portrait", sha256="aa", refused=None):
    return {"case": case, "kind": kind, "template": template, "fuse_degree": 80.0, "profile_degree": 50.0,
            "refused": refused, "sha256": None if refused else sha256}


def test_a_label_matches_only_the_poster_with_the_same_pixels(tmp_path):
    _labels_file(tmp_path / "2026-12-08.json", [_entry(sha256="aa")])
    index = labels.load(tmp_path)
    same, changed = _record(sha256="aa"), _record(sha256="bb")
    index.annotate(same, "80/50")
    index.annotate(changed, "80/50")
    assert same["label"] == {"publishable": True, "defects": []} and not same["label_stale"]
    assert changed["label"] is None and changed["label_stale"]


def test_a_label_of_another_degree_setting_or_template_does_not_match(tmp_path):
    _labels_file(tmp_path / "a.json", [_entry(degrees="100/100"), _entry(template="comic-astronaut")])
    record = _record()
    labels.load(tmp_path).annotate(record, "80/50")
    assert record["label"] is None and not record["label_stale"]


def test_files_without_the_labels_format_hold_no_labels(tmp_path):
    (tmp_path / "2026-12-07-beauty.json").write_text(json.dumps({"posters": [_entry()]}))
    assert len(labels.load(tmp_path)) == 0


def test_a_later_file_overrides_an_earlier_label_of_the_same_poster(tmp_path):
    _labels_file(tmp_path / "2026-12-08.json", [_entry(publishable=True)])
    _labels_file(tmp_path / "2026-12-09.json", [_entry(publishable=False, defects=["blob"])])
    assert labels.load(tmp_path).find("laughing-obama", "hopper-portrait", "80/50", "aa").defects == ("blob",)


def test_rates_count_publishable_among_labelled_and_refused_among_all():
    records = [_record(sha256=f"p{i}") for i in range(4)] + [_record(refused="FACE_OCCLUDED")]
    records[0]["label"] = {"publishable": True, "defects": []}
    records[1]["label"] = {"publishable": False, "defects": ["blob", "seam"]}
    records[2]["label"] = None
    records[2]["label_stale"] = True
    rates = labels.rates(records)
    assert rates["posters"] == 5 and rates["refused"] == 1 and rates["refused_rate"] == 0.2
    assert rates["labelled"] == 2 and rates["publishable"] == 1 and rates["publishable_rate"] == 0.5
    assert rates["unlabelled"] == 2 and rates["stale"] == 1
    assert rates["defects"] == {"blob": 1, "seam": 1}


def test_rates_of_no_labelled_poster_have_no_rate():
    assert labels.rates([_record()])["publishable_rate"] is None


def _key(path, rows):
    path.write_text(json.dumps({"rows": rows}))
    return path


def test_import_joins_ratings_to_the_key_and_merges_into_the_labels_file(tmp_path):
    key = _key(tmp_path / "key.json", {
        "r001": {"case": "shine-cage2", "kind": "shine", "template": "hopper-portrait", "degrees": "80/50", "sha256": "s1"},
        "r002": {"case": "makeup-smoky-queen20", "kind": "makeup", "template": "astronaut-poster", "degrees": "80/50",
                 "sha256": "s2"},
        "r003": {"case": "glasses-drawn-cage2", "kind": "glasses", "template": "hopper-portrait", "degrees": "80/50",
                 "sha256": "s3"},
    })
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("row,publishable,defects,note\nr001,no,blob; seam,white patch on the nose\nr002,yes,,\nr003,,,\n")
    out = _labels_file(tmp_path / "labels.json", [_entry(case="old", sha256="s0")])
    added, total = labels.import_ratings(ratings, key, out, "2026-12-08")
    assert (added, total) == (2, 3)
    written = {label.case: label for label in labels.read_file(out)}
    assert written["shine-cage2"] == labels.Label("shine-cage2", "hopper-portrait", "80/50", "s1", False,
                                                  ("blob", "seam"), "white patch on the nose")
    assert written["makeup-smoky-queen20"].publishable and "old" in written
    assert json.loads(out.read_text())["rubric"] == labels.RUBRIC


def test_import_refuses_an_unknown_defect_by_name(tmp_path):
    key = _key(tmp_path / "key.json", {"r001": {"case": "c", "template": "t", "degrees": "80/50", "sha256": "s"}})
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("row,publishable,defects,note\nr001,no,smudge,\n")
    with pytest.raises(labels.LabelError, match="smudge"):
        labels.import_ratings(ratings, key, tmp_path / "out.json", "2026-12-08")


def test_import_refuses_rows_the_key_does_not_have(tmp_path):
    key = _key(tmp_path / "key.json", {})
    ratings = tmp_path / "ratings.csv"
    ratings.write_text("row,publishable,defects,note\nr009,yes,,\n")
    with pytest.raises(labels.LabelError, match="r009"):
        labels.import_ratings(ratings, key, tmp_path / "out.json", "2026-12-08")


def test_poster_digest_is_the_sha256_of_the_png_bytes():
    assert labels.poster_digest(b"") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
