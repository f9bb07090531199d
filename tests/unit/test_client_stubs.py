"""The committed gRPC stubs are exactly what the pinned grpcio-tools makes of the proto."""

import shutil
import subprocess
import sys
from pathlib import Path

CLIENT_SRC = Path(__file__).resolve().parents[2] / "client" / "src"
GENERATED = ("facefuse_pb2.py", "facefuse_pb2.pyi", "facefuse_pb2_grpc.py")


def test_generated_stubs_match_the_proto(tmp_path):
    proto = CLIENT_SRC / "facefuse_client" / "v1" / "facefuse.proto"
    (tmp_path / "facefuse_client" / "v1").mkdir(parents=True)
    shutil.copy(proto, tmp_path / "facefuse_client" / "v1" / proto.name)
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{tmp_path}", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "facefuse_client/v1/facefuse.proto"],
        check=True, cwd=tmp_path,
    )
    for name in GENERATED:
        fresh = (tmp_path / "facefuse_client" / "v1" / name).read_text()
        committed = (CLIENT_SRC / "facefuse_client" / "v1" / name).read_text()
        assert fresh == committed, f"{name} is stale: regenerate with grpc_tools.protoc (see this test)"
