"""`facefuse bench sweep`'s decisions and the tuning it writes, without a server."""

from __future__ import annotations

import json

import pytest

from facefuse.bench.sweep import DEFAULT_KNOBS, Knob, Point, confirmed, label_of, pick, spec_defaults
from facefuse.settings import Settings
from facefuse_build import configs
from facefuse_build.configs import PYTHON_STAGE_QUEUE_DELAY_US, Profile, Tuning
from facefuse_build.errors import BuildError

SETTINGS = Settings()


def point(label: str, rate: float, p99: float, error: str | None = None, latencies_ms=()) -> Point:
    return Point(label, {}, posters_per_s=rate, p99_ms=p99, requests=0 if error else 100, error=error,
                 latencies_s=[ms / 1000 for ms in latencies_ms])


def test_pick_takes_the_fastest_candidate_within_the_p99_bound():
    incumbent = point("default", 20.0, 300.0)
    chosen = pick([point("a", 22.0, 350.0), point("b", 25.0, 500.0), point("c", 23.0, 359.0)], incumbent, 360.0, 0.03)
    assert chosen.label == "c"


def test_pick_keeps_the_incumbent_when_no_candidate_gains_enough():
    incumbent = point("default", 20.0, 300.0)
    assert pick([point("a", 20.5, 250.0)], incumbent, 360.0, 0.03) is incumbent


def test_pick_never_takes_a_configuration_whose_calls_failed():
    incumbent = point("default", 20.0, 300.0)
    # faster and inside the p99 bound: only its failed calls rule it out
    assert pick([point("broken", 30.0, 100.0, error="InferenceServerException: boom")], incumbent, 360.0, 0.0) is incumbent


def test_confirmation_adopts_the_winner_only_when_faster_by_the_gain_in_the_same_minutes_and_within_bound():
    default = [point("default", 20.0, 0, latencies_ms=[100] * 99 + [300]) for _ in range(2)]
    faster = [point("winner", 23.0, 0, latencies_ms=[90] * 99 + [320]) for _ in range(2)]
    assert confirmed(default, faster, 1.2, 0.03)["adopted"]
    barely = [point("winner", 20.2, 0, latencies_ms=[90] * 99 + [320]) for _ in range(2)]  # 1%: noise
    assert not confirmed(default, barely, 1.2, 0.03)["adopted"]
    slower = [point("winner", 19.0, 0, latencies_ms=[90] * 100) for _ in range(2)]
    assert not confirmed(default, slower, 1.2, 0.03)["adopted"]
    late = [point("winner", 23.0, 0, latencies_ms=[100] * 90 + [900] * 10) for _ in range(2)]
    verdict = confirmed(default, late, 1.2, 0.03)
    assert not verdict["adopted"] and verdict["winner_p99_ms"] > verdict["p99_bound_ms"]


def test_label_names_only_what_differs_from_the_defaults():
    defaults = spec_defaults(DEFAULT_KNOBS, SETTINGS)
    assert label_of(defaults, defaults) == "default"
    tuning = defaults.merged(Tuning(python_stage_queue_delay_us=250, models={"fuse_faces": {"instances_cpu": 3}}))
    assert label_of(tuning, defaults) == "python_delay_us=250; fuse_faces.instances_cpu=3"


def test_spec_defaults_are_the_specs_own_values_not_the_committed_tuning():
    defaults = spec_defaults(DEFAULT_KNOBS, SETTINGS)
    specs = {s.name: s for s in configs.model_specs(Profile("cpu"), SETTINGS, Tuning())}
    assert defaults.python_stage_queue_delay_us == PYTHON_STAGE_QUEUE_DELAY_US
    assert defaults.models["fuse_faces"]["instances_cpu"] == specs["fuse_faces"].instances_cpu


def test_a_knob_on_several_models_sets_each_of_them():
    knob = Knob("x", (1, 2), ("decode", "postprocess"), "instances_cpu")
    assert knob.tuning(2).models == {"decode": {"instances_cpu": 2}, "postprocess": {"instances_cpu": 2}}


def test_tuning_overrides_reach_the_generated_configs():
    tuning = Tuning(python_stage_queue_delay_us=250,
                    models={"fuse": {"instances_cpu": 3, "cpu_preferred_batch_sizes": None}})
    models, _ = configs.repository_configs(Profile("cpu"), SETTINGS, tuning=tuning)
    assert models["fuse"]["instance_group"] == [{"kind": "KIND_CPU", "count": 3}]
    assert "preferred_batch_size" not in models["fuse"]["dynamic_batching"]
    assert models["decode"]["dynamic_batching"]["max_queue_delay_microseconds"] == 250
    # The networks keep their own delay: the Python stages' setting is theirs alone.
    assert models["face_detector"]["dynamic_batching"]["max_queue_delay_microseconds"] == 1000


def test_a_tuned_file_round_trips_and_is_read_as_the_profile_default(tmp_path):
    tuning = Tuning(500, {"fuse": {"instances_cpu": 1, "cpu_preferred_batch_sizes": (1, 2)}})
    (tmp_path / "cpu.json").write_text(json.dumps({**tuning.to_dict(), "chosen_by": {"command": "facefuse bench sweep"}}))
    assert configs.tuned("cpu", tmp_path) == tuning
    assert configs.tuned("gpu", tmp_path) == Tuning()


@pytest.mark.parametrize("bad", [
    {"models": {"fuse": {"max_batch_size": 4}}},
    {"models": {"fuse": {"instances_cpu": 0}}},
    {"models": {"fuse": {"cpu_preferred_batch_sizes": []}}},
    {"python_stage_queue_delay_us": -1},
])
def test_a_tuning_that_sets_something_else_or_nonsense_is_refused(bad):
    with pytest.raises(BuildError):
        Tuning.from_dict(bad)


def test_a_tuning_for_a_model_the_profile_lacks_is_refused():
    with pytest.raises(BuildError, match="no_such_stage"):
        configs.model_specs(Profile("cpu"), SETTINGS, Tuning(models={"no_such_stage": {"instances_cpu": 2}}))


def test_the_written_tuning_is_what_the_profile_reads_back(tmp_path):
    from facefuse.bench.sweep import SweepReport, write_tuning

    report = SweepReport(machine={"cpu_count": 2, "processor": "x86_64"}, plan={"concurrency": 8, "requests": 10,
                         "p99_factor": 1.2, "min_gain": 0.03, "confirm_rounds": 1}, start={}, p99_bound_ms=900.0,
                         chosen_label="fuse.instances_cpu=3", command="facefuse bench sweep --write", date="2026-12-07")
    chosen = Tuning(1000, {"fuse": {"instances_cpu": 3, "cpu_preferred_batch_sizes": (1,)}})
    write_tuning(report, chosen, tmp_path)
    assert configs.tuned("cpu", tmp_path) == chosen
    assert "fuse.instances_cpu=3" in (tmp_path / "cpu-sweep.md").read_text()
