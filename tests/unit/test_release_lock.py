"""Two `facefuse models` commands at once: the second waits for the first."""

from __future__ import annotations

import subprocess
import sys
import threading

from facefuse.models_admin.errors import ReleaseStateError
from facefuse.models_admin.lifecycle import ModelAdmin
from facefuse.models_admin.releases import first_state, save_state
from facefuse.models_admin.versions import VERSIONED_MODELS
from facefuse.settings import Settings

HOLD = """
import sys
from pathlib import Path
from facefuse.models_admin.releases import release_lock
with release_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
    Path(sys.argv[2]).write_text("released")
"""


class KeyTakingTriton:
    def check_access(self) -> None:
        pass


def test_a_command_that_changes_the_releases_waits_for_one_already_running(tmp_path):
    save_state(tmp_path, first_state({m: 1 for m in VERSIONED_MODELS}))
    marker = tmp_path / "first-done"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path), str(marker)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    told_to_wait = threading.Event()
    outcome = {}

    def log(line: str) -> None:
        if "waiting" in line:
            told_to_wait.set()

    def promote() -> None:
        admin = ModelAdmin(Settings(model_repository_dir=tmp_path), admin=KeyTakingTriton(), log=log)
        try:
            admin.promote()
        except ReleaseStateError as exc:  # nothing to promote: it ran, after the first command
            outcome["marker_when_it_ran"] = marker.exists()
            outcome["error"] = str(exc)

    second = threading.Thread(target=promote)
    second.start()
    assert told_to_wait.wait(timeout=60)
    assert not outcome  # still waiting while the first holds the lock
    holder.stdin.write("\n")
    holder.stdin.flush()
    second.join(timeout=60)
    assert holder.wait(timeout=60) == 0
    assert outcome["marker_when_it_ran"] is True
    assert "nothing to promote" in outcome["error"]
