"""The preload library that fills tritonserver's keys in from its environment."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from facefuse.server.secret_args import build_library, secret_placeholder

SHOW = ("import os, sys; print(repr(sys.argv[1:])); print(repr(open('/proc/self/cmdline', 'rb').read()));"
        "print(repr(open('/proc/self/environ', 'rb').read())); print(repr(os.environ.get('FF_TEST_KEY')));"
        "print(repr(os.environ.get('LD_PRELOAD')))")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build_library(tmp_path_factory.mktemp("lib"))


def run_preloaded(library, *args, env_key="s3cr3t-value"):
    # The real interpreter, not a wrapper script: the library acts on the program it loads into.
    env = {"PATH": os.environ["PATH"], "LD_PRELOAD": str(library)}
    if env_key is not None:
        env["FF_TEST_KEY"] = env_key
    return subprocess.run([os.path.realpath(sys.executable), "-c", SHOW, *args], env=env, capture_output=True, text=True)


def test_the_program_gets_the_key_while_its_command_line_and_environment_show_none(library):
    result = run_preloaded(library, f"--grpc-restricted-protocol=a,b:admin-key={secret_placeholder('FF_TEST_KEY')}")
    assert result.returncode == 0, result.stderr
    argv, cmdline, environ, variable, preload = result.stdout.splitlines()
    assert argv == repr(["--grpc-restricted-protocol=a,b:admin-key=s3cr3t-value"])
    assert "s3cr3t-value" not in cmdline and "@secret:FF_TEST_KEY" in cmdline
    assert "s3cr3t-value" not in environ
    # Children the program starts inherit neither the key nor the library.
    assert variable == "None" and preload == "None"


def test_a_placeholder_without_its_variable_stops_the_program_instead_of_starting_keyless(library):
    result = run_preloaded(library, f"--key={secret_placeholder('FF_TEST_KEY')}", env_key=None)
    assert result.returncode == 78
    assert "FF_TEST_KEY is not set" in result.stderr


def test_secret_names_are_checked():
    with pytest.raises(ValueError, match="upper-case"):
        secret_placeholder("not a name")
