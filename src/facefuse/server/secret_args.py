"""Keys for tritonserver without putting them on its command line.

tritonserver reads its API keys only from arguments, and every local user can read
every process's arguments (`/proc/PID/cmdline` is 0444). So facefuse passes a
placeholder (`secret_placeholder`) as the argument and the key in an environment
variable, which only the server's own user (and root) can read, and preloads a small
library (secret_args.c) that fills the placeholders in before tritonserver's `main`
and wipes the variables. The library is compiled here on first use (a C compiler is
part of the supported machines; the serving image builds it in its Dockerfile).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SOURCE = Path(__file__).with_name("secret_args.c")
LIBRARY_NAME = "libfacefuse_secret_args.so"
MARK = "@secret:"


class SecretArgsUnavailable(RuntimeError):
    """The preload library cannot be built here (no C compiler)."""


def secret_placeholder(variable: str) -> str:
    """What stands in an argument for the value of the environment variable."""
    if not variable or not all(c.isupper() or c.isdigit() or c == "_" for c in variable):
        raise ValueError(f"secret variable names are upper-case letters, digits and _ (got {variable!r})")
    return f"{MARK}{variable}"


def build_library(target_dir: Path) -> Path:
    """<target_dir>/libfacefuse_secret_args.so, rebuilt when secret_args.c is newer.

    The directory and library are readable by everyone (the server may run as another
    user); they hold no secret.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    target_dir.chmod(0o755)
    library = target_dir / LIBRARY_NAME
    if library.is_file() and library.stat().st_mtime >= SOURCE.stat().st_mtime:
        return library
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise SecretArgsUnavailable(
            "no C compiler found to build the library that keeps Triton's keys off its command line; "
            "install one (Debian: apt-get install gcc) or set CC")
    partial = library.with_name(library.name + ".partial")
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-Wall", "-o", str(partial), str(SOURCE)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SecretArgsUnavailable(f"building {LIBRARY_NAME} failed:\n{result.stderr}")
    partial.chmod(0o755)
    os.replace(partial, library)
    return library
