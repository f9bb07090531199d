"""Another local account on the machine, and the server's own user.

- An unprivileged account (uid 65534) finds neither of Triton's keys in any process's
  arguments or environment, in the logs, `var/` or `/dev/shm`, and every restricted call
  it makes is refused.
- Started by root, tritonserver and its stubs run as FACEFUSE_TRITON_USER; that user can
  read the models and templates but change none of them, and code loaded into the
  server with the admin key runs as that user, not as root.

These need root (to switch users) and setpriv (util-linux); elsewhere they skip.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import textwrap
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient

from facefuse.gateway.process import start_gateway
from facefuse.server.triton import group_members

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                                reason="switching to another user needs root and setpriv")

# The machine's own Python: the checkout's interpreter may live where other users cannot go.
SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534

PROBE = textwrap.dedent('''
    import json, os, sys, urllib.error, urllib.request
    keys = json.loads(sys.stdin.read())  # on stdin: never in this probe's own arguments
    found = []

    def check(where, data):
        found.extend(f"{name} key in {where}" for name, key in keys.items() if key.encode() in data)

    for pid in filter(str.isdigit, os.listdir("/proc")):
        for part in ("cmdline", "environ"):
            try:
                check(f"/proc/{pid}/{part}", open(f"/proc/{pid}/{part}", "rb").read())
            except OSError:
                pass
    for root in json.loads(os.environ["PROBE_ROOTS"]):
        for folder, _, files in os.walk(root):
            for name in files:
                path = os.path.join(folder, name)
                try:
                    if os.path.getsize(path) < 64 << 20:
                        check(path, open(path, "rb").read())
                except OSError:
                    pass

    override = json.dumps({"parameters": {"config": json.dumps({"backend": "python"}),
                                          "file:1/model.py": "aW1wb3J0IG9z"}}).encode()
    calls = {
        "repository index": ("POST", "/v2/repository/index", b"{}"),
        "load with a file override": ("POST", "/v2/repository/models/probe/load", override),
        "unload face_fusion": ("POST", "/v2/repository/models/face_fusion/unload", b"{}"),
        "log settings": ("POST", "/v2/logging", b'{"log_verbose_level": 1}'),
        "trace settings": ("GET", "/v2/trace/setting", None),
        "shared memory": ("GET", "/v2/systemsharedmemory/status", None),
        "inference": ("POST", "/v2/models/face_fusion/infer", b"{}"),
        "statistics": ("GET", "/v2/models/face_fusion/stats", None),
    }
    statuses = {}
    for name, (method, path, body) in calls.items():
        for headers in ({}, {"admin-key": "a-guess", "gateway-key": "a-guess"}):
            request = urllib.request.Request(os.environ["PROBE_TRITON"] + path, data=body, method=method, headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=10) as reply:
                    statuses.setdefault(name, []).append(reply.status)
            except urllib.error.HTTPError as error:
                statuses.setdefault(name, []).append(error.code)
    print(json.dumps({"uid": os.getuid(), "found": found, "statuses": statuses}))
''')


def as_user(uid: int, gid: int, script: str, stdin: str = "", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", SYSTEM_PYTHON, "-c", script],
                          input=stdin, capture_output=True, text=True, env=env or {}, cwd="/", timeout=300)


def test_another_local_user_finds_no_key_anywhere_and_every_restricted_call_it_makes_is_refused(triton, settings):
    # A gateway of its own process too, holding the gateway key as `facefuse gateway run` does.
    gateway, _ = start_gateway(triton.grpc_url, {**os.environ, "FACEFUSE_TRITON_GATEWAY_KEY": triton.gateway_key})
    try:
        roots = [str(settings.var_dir), str(triton.log_path.parent), "/dev/shm", str(settings.templates_path)]
        keys = {"admin": triton.admin_key, "gateway": triton.gateway_key}
        probe = as_user(NOBODY, NOBODY, PROBE, stdin=json.dumps(keys),
                        env={"PROBE_ROOTS": json.dumps(roots), "PROBE_TRITON": triton.http_url})
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)
    assert report["uid"] == NOBODY
    assert report["found"] == []
    assert report["statuses"] and all(codes == [403, 403] for codes in report["statuses"].values()), report["statuses"]
    # The keys do work: what the probe was refused is a matter of the key alone.
    with grpcclient.InferenceServerClient(triton.grpc_url) as client:
        assert client.get_model_repository_index(headers=triton.admin_grpc_headers).models


def server_user(settings) -> pwd.struct_passwd:
    return pwd.getpwnam(settings.triton_user)


def test_tritonserver_and_its_stubs_run_as_an_unprivileged_user_that_can_read_but_not_change_the_models(triton, settings):
    user = server_user(settings)
    assert user.pw_uid != 0
    members = group_members(triton.process.pid)
    assert len(members) >= 6  # tritonserver and a stub per Python-backend model
    for pid in members:
        uids = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:"))
        assert set(uids.split()[1:]) == {str(user.pw_uid)}, (pid, uids)

    targets = [settings.model_repository_dir / "fuse" / "config.pbtxt", settings.ensembles_dir / "face_fusion" / "config.pbtxt",
               Path(__file__).resolve().parents[2] / "src" / "facefuse" / "__init__.py"]
    script = textwrap.dedent(f'''
        import json, os
        outcome = {{}}
        for path in {json.dumps([str(t) for t in targets])}:
            readable = os.access(path, os.R_OK)
            try:
                open(path, "a").close()
                outcome[path] = [readable, "written"]
            except PermissionError:
                outcome[path] = [readable, "refused"]
        print(json.dumps(outcome))
    ''')
    # The checkout's files as that user sees them outside the server's namespace; the
    # ancestors the server needs exposed (a Python under /root) are checked by the start.
    result = as_user(user.pw_uid, user.pw_gid, script)
    assert result.returncode == 0, result.stderr
    for path, (readable, write) in json.loads(result.stdout).items():
        assert write == "refused", path
        assert readable, path


def test_code_loaded_with_the_admin_key_runs_as_the_unprivileged_user_not_root(triton, settings):
    user = server_user(settings)
    drop = Path(tempfile.mkdtemp(prefix="facefuse-uid-probe-"))
    drop.chmod(0o1733)  # the server's user may create a file here, not list it
    marker = drop / "uid"
    code = (f"import os\nopen({str(marker)!r}, 'w').write(str(os.getuid()))\n"
            "class TritonPythonModel:\n    def execute(self, requests):\n        return []\n")
    config = json.dumps({"backend": "python", "max_batch_size": 0,
                         "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [1]}],
                         "output": [{"name": "y", "data_type": "TYPE_FP32", "dims": [1]}]})
    try:
        with grpcclient.InferenceServerClient(triton.grpc_url) as client:
            client.load_model("uid-probe", config=config, files={"file:1/model.py": code.encode()},
                              headers=triton.admin_grpc_headers)
            try:
                assert marker.read_text() == str(user.pw_uid)
            finally:
                client.unload_model("uid-probe", headers=triton.admin_grpc_headers)
    finally:
        shutil.rmtree(drop, ignore_errors=True)
