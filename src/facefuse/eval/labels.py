"""Labels by eye: whether a development poster is publishable (docs/quality.md#publishable)
and what is wrong with it, kept in docs/quality-labels/*.json.

A label belongs to one poster's exact pixels: it is keyed by case, template, degree
setting and the SHA-256 of the poster's PNG bytes as the gateway sent them. When the fuse
changes, the posters change and their labels no longer match: `facefuse eval quality`
counts such posters as unlabelled (and says how many had a label for other pixels)
rather than reuse a judgement of a different picture.

Labels come from blind rating sheets (`facefuse eval sheets`: shuffled rows of face
crops, a private key file outside the repository) and `facefuse eval labels import`,
which joins a rater's judgements to the key.
"""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

FORMAT = "facefuse-labels/1"
RUBRIC = "docs/quality.md#publishable"
DEFECTS = ("blob", "missing_feature", "template_showing", "ghost", "two_tone", "seam", "strands", "distorted", "other")
RATINGS_COLUMNS = ("row", "publishable", "defects", "note")
_YES, _NO = {"yes", "y", "true", "1"}, {"no", "n", "false", "0"}


class LabelError(ValueError):
    pass


@dataclass(frozen=True)
class Label:
    case: str
    template: str
    degrees: str  # fuse/profile, as quality.setting_name writes it: "80/50"
    sha256: str  # of the poster's PNG bytes
    publishable: bool
    defects: tuple[str, ...] = ()
    note: str = ""

    @property
    def key(self) -> tuple[str, str, str, str]:
        return self.case, self.template, self.degrees, self.sha256


def poster_digest(png: bytes) -> str:
    return hashlib.sha256(png).hexdigest()


def labels_dir() -> Path:
    return Path(__file__).resolve().parents[3] / "docs" / "quality-labels"


# ---- reading and matching ------------------------------------------------------------
def read_file(path: Path) -> list[Label]:
    """The labels of one file; files of other formats (older notes without digests) hold none."""
    document = json.loads(path.read_text())
    if document.get("format") != FORMAT:
        return []
    return [Label(e["case"], e["template"], e["degrees"], e["sha256"], bool(e["publishable"]),
                  tuple(e.get("defects", ())), e.get("note", "")) for e in document["labels"]]


def load(directory: Path | None = None) -> "LabelIndex":
    """Every label in the folder; a later file (by name: dated) overrides an earlier one."""
    directory = directory or labels_dir()
    labels = [label for path in sorted(directory.glob("*.json")) for label in read_file(path)]
    return LabelIndex(labels)


class LabelIndex:
    def __init__(self, labels: list[Label]):
        self.by_key = {label.key: label for label in labels}
        self.poster_keys = {label.key[:3] for label in labels}

    def __len__(self) -> int:
        return len(self.by_key)

    def find(self, case: str, template: str, degrees: str, sha256: str) -> Label | None:
        return self.by_key.get((case, template, degrees, sha256))

    def stale(self, case: str, template: str, degrees: str, sha256: str) -> bool:
        """A label exists for this poster, but for other pixels."""
        return (case, template, degrees) in self.poster_keys and self.find(case, template, degrees, sha256) is None

    def annotate(self, record: dict, degrees: str) -> None:
        """Adds the label (or None) and whether an old label went stale to a poster record."""
        if record.get("refused") or not record.get("sha256"):
            return
        key = (record["case"], record["template"], degrees, record["sha256"])
        label = self.find(*key)
        record["label"] = None if label is None else {"publishable": label.publishable, "defects": list(label.defects)}
        record["label_stale"] = self.stale(*key)


def rates(records: list[dict]) -> dict:
    """Publishable rate among labelled posters, refused rate among all, and the posters
    without a label for their exact pixels (stale: labelled once, pixels changed since)."""
    refused = [r for r in records if r.get("refused")]
    fused = [r for r in records if not r.get("refused")]
    labelled = [r for r in fused if r.get("label") is not None]
    publishable = [r for r in labelled if r["label"]["publishable"]]
    defects: dict[str, int] = {}
    for r in labelled:
        for defect in r["label"]["defects"]:
            defects[defect] = defects.get(defect, 0) + 1
    return {
        "posters": len(records),
        "refused": len(refused),
        "refused_rate": _share(len(refused), len(records)),
        "labelled": len(labelled),
        "publishable": len(publishable),
        "publishable_rate": _share(len(publishable), len(labelled)),
        "unlabelled": len(fused) - len(labelled),
        "stale": sum(1 for r in fused if r.get("label") is None and r.get("label_stale")),
        "defects": dict(sorted(defects.items())),
    }


def _share(part: int, whole: int) -> float | None:
    return None if whole == 0 else round(part / whole, 4)


# ---- importing a rater's judgements -------------------------------------------------------
def read_ratings(path: Path) -> dict[str, tuple[bool, tuple[str, ...], str]]:
    """A rater's CSV (row, publishable yes/no, defects separated by ';', note); rows left
    blank are not rated."""
    ratings = {}
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.DictReader(handle), 2):
            answer = (row.get("publishable") or "").strip().lower()
            if not answer:
                continue
            if answer not in _YES | _NO:
                raise LabelError(f"{path}:{line}: publishable is {answer!r}; write yes or no")
            defects = tuple(d.strip() for d in (row.get("defects") or "").split(";") if d.strip())
            unknown = [d for d in defects if d not in DEFECTS]
            if unknown:
                raise LabelError(f"{path}:{line}: unknown defects {unknown}; use {', '.join(DEFECTS)}")
            ratings[row["row"].strip()] = (answer in _YES, defects, (row.get("note") or "").strip())
    return ratings


def import_ratings(ratings_path: Path, key_path: Path, out_path: Path, date: str, how: str = "") -> tuple[int, int]:
    """Joins ratings to the sheets' key and merges them into out_path (same poster and
    pixels: the new judgement wins). Returns (labels written now, labels in the file)."""
    key = json.loads(key_path.read_text())["rows"]
    ratings = read_ratings(ratings_path)
    missing = sorted(set(ratings) - set(key))
    if missing:
        raise LabelError(f"rows {missing[:5]} are not in {key_path}; was it made with these sheets?")
    new = [Label(key[row]["case"], key[row]["template"], key[row]["degrees"], key[row]["sha256"],
                 publishable, defects, note) for row, (publishable, defects, note) in sorted(ratings.items())]
    existing = read_file(out_path) if out_path.is_file() else []
    merged = {label.key: label for label in existing + new}
    document = {
        "format": FORMAT,
        "rubric": RUBRIC,
        "date": date,
        "how": how or "blind: rows of face crops at 100% (user | poster) in shuffled order, rated by the rubric without the key",
        "labels": [_entry(label) for label in sorted(merged.values(), key=lambda lb: lb.key)],
    }
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(document, indent=1) + "\n")
    return len(new), len(merged)


def _entry(label: Label) -> dict:
    entry = asdict(label)
    entry["defects"] = list(label.defects)
    return entry
