"""Turn this process into tritonserver: its own /dev/shm, an unprivileged user, then exec.

`start_triton` runs `python -m facefuse.server.launch [options] -- tritonserver ARGS` as
a plain exec (no `preexec_fn`), so nothing runs between fork and exec in the process
that starts it: that process may be the gateway, whose gRPC threads make a forked
Python child crash (grpcio skips its fork handlers; children died with SIGSEGV in
cygrpc). Everything that must happen before tritonserver starts happens here instead,
in a fresh interpreter with no threads:

1. A mount namespace with a private tmpfs on /dev/shm: the Python backend's regions
   (request and response tensors: photos, posters) are invisible to every other
   process and freed by the kernel when the server and its stubs are gone, however
   they ended. As root this needs nothing; as another user it uses a user namespace
   that maps only that user onto itself. Where neither is allowed, the regions stay
   in the shared /dev/shm (TritonServer.make_regions_private then applies).
2. Started by root, the server runs as an unprivileged user (`--user`), so code loaded
   into it, even with a leaked admin key, never runs as root. Directories it must read
   that the user cannot reach (a Python under /root, mode 0700) are exposed inside
   the namespace alone: their 0700 ancestor is covered by an empty tmpfs holding only
   the needed subtree, bind-mounted read-only; the rest of /root stays hidden.
3. The kernel sends SIGTERM if the starting process dies, even by SIGKILL, so no
   orphaned tritonserver keeps its ports and memory. Files it creates are its own.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import pwd
import signal
import sys
import tempfile
from pathlib import Path

PR_SET_PDEATHSIG = 1  # linux/prctl.h
CLONE_NEWNS, CLONE_NEWUSER = 0x00020000, 0x10000000  # linux/sched.h
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT = 0x1, 0x2, 0x4, 0x20  # linux/mount.h
MS_BIND, MS_MOVE, MS_REC, MS_PRIVATE = 0x1000, 0x2000, 0x4000, 0x40000
# Exit codes of a launch that failed before tritonserver ran (sysexits.h).
EX_NOUSER, EX_OSERR = 67, 71
# The library that fills the keys into tritonserver's arguments (facefuse.server.secret_args).
PRELOAD_VARIABLE = "FACEFUSE_SERVER_PRELOAD"

_LIBC = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    enc = (lambda s: s.encode() if s is not None else None)
    if _LIBC.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {source} on {target}: {os.strerror(errno)}")


def _write(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def private_mount_namespace() -> bool:
    """Enter a new mount namespace whose mounts do not propagate back; False where
    this process may not (the server then shares the host's /dev/shm)."""
    if os.geteuid() != 0:
        uid, gid = os.getuid(), os.getgid()
        if _LIBC.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            return False
        # Map only this user onto itself: files keep their owner, nothing gains rights.
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"{uid} {uid} 1")
        _write("/proc/self/gid_map", f"{gid} {gid} 1")
    elif _LIBC.unshare(CLONE_NEWNS) != 0:
        return False
    try:
        _mount("none", "/", None, MS_REC | MS_PRIVATE)
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    except OSError:
        return False
    return True


def hidden_ancestor(path: Path, user: pwd.struct_passwd) -> Path | None:
    """The highest directory above `path` the user may not enter (no search permission
    for it as owner, group or other), or None when the path is reachable."""
    for ancestor in reversed(path.parents):
        if ancestor == Path("/"):
            continue
        st = ancestor.stat()
        if st.st_uid == user.pw_uid:
            allowed = st.st_mode & 0o100
        elif st.st_gid == user.pw_gid:
            allowed = st.st_mode & 0o010
        else:
            allowed = st.st_mode & 0o001
        if not allowed:
            return ancestor
    return None


def expose(paths: list[Path], user: pwd.struct_passwd) -> list[Path]:
    """Make each path reachable for `user` inside this mount namespace (see module doc);
    returns the directories that were covered. Covering works top-down, a round per
    depth: below a covered directory the next hidden one (pytest's 0700 temporary
    folders nest three deep) is found and covered in the next round."""
    covered: list[Path] = []
    for _ in range(64):  # deeper than any real path: a bound on the rounds
        needed: dict[Path, set[str]] = {}
        # A path as given and where its symlinks lead (the venv's python -> a pyenv build).
        for path in {Path(os.path.abspath(p)) for p in paths} | {Path(p).resolve() for p in paths}:
            ancestor = hidden_ancestor(path, user)
            if ancestor is not None:
                needed.setdefault(ancestor, set()).add(path.relative_to(ancestor).parts[0])
        if not needed:
            return covered
        for ancestor, children in needed.items():
            _cover(ancestor, children)
            covered.append(ancestor)
    raise OSError(f"cannot make {paths} reachable for {user.pw_name}")


def _cover(ancestor: Path, children: set[str]) -> None:
    """Park each child on a staging tmpfs, cover the ancestor with an empty tmpfs any
    user may enter, move the children back (read-only)."""
    staging = tempfile.mkdtemp(prefix="facefuse-expose-", dir="/dev/shm")
    for child in children:
        os.mkdir(f"{staging}/{child}")
        _mount(str(ancestor / child), f"{staging}/{child}", None, MS_BIND | MS_REC)
        _mount("none", f"{staging}/{child}", None, MS_REMOUNT | MS_BIND | MS_RDONLY)
    _mount("tmpfs", str(ancestor), "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755")
    for child in children:
        os.mkdir(ancestor / child)
        _mount(f"{staging}/{child}", str(ancestor / child), None, MS_MOVE)
        os.rmdir(f"{staging}/{child}")
    os.rmdir(staging)


def drop_to(user: pwd.struct_passwd) -> None:
    os.setgroups([])
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ["HOME"] = user.pw_dir
    os.environ["USER"] = os.environ["LOGNAME"] = user.pw_name


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m facefuse.server.launch")
    parser.add_argument("--user", help="Run as this user when started by root.")
    parser.add_argument("--expose", action="append", default=[], type=Path,
                        help="A path the server must read (made reachable for --user).")
    parser.add_argument("--parent-pid", type=int, required=True,
                        help="The starting process: when it dies, the server gets SIGTERM.")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- tritonserver ARGS")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("nothing to run: give -- tritonserver ARGS")

    os.umask(0o077)
    user = None
    if os.geteuid() == 0 and args.user:
        try:
            user = pwd.getpwnam(args.user)
        except KeyError:
            print(f"facefuse launch: no user {args.user!r} to run tritonserver as "
                  f"(FACEFUSE_TRITON_USER); create it or name another", file=sys.stderr)
            sys.exit(EX_NOUSER)
    private = private_mount_namespace()
    if user is not None:
        if private:
            expose(args.expose, user)
        else:
            unreachable = [p for p in args.expose if hidden_ancestor(Path(os.path.abspath(p)), user)]
            if unreachable:
                print(f"facefuse launch: tritonserver's user {user.pw_name} cannot reach {unreachable[0]}, and this "
                      "process may not create a mount namespace to expose it: make its folders searchable for "
                      f"{user.pw_name}, or set FACEFUSE_TRITON_USER=\"\" to run tritonserver as root", file=sys.stderr)
                sys.exit(EX_OSERR)
        drop_to(user)
    # After the uid change: changing credentials clears the parent-death signal.
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != args.parent_pid:
        sys.exit(EX_OSERR)  # the starter died before the signal was armed
    # Preloaded into tritonserver only: in this interpreter it would fill the keys into
    # the arguments handed on to exec, and so into the server's /proc/PID/cmdline.
    env = dict(os.environ)
    preload = env.pop(PRELOAD_VARIABLE, None)
    if preload:
        env["LD_PRELOAD"] = preload
    try:
        os.execve(command[0], command, env)
    except OSError as exc:
        print(f"facefuse launch: cannot run {command[0]}: {exc}", file=sys.stderr)
        sys.exit(EX_OSERR)


if __name__ == "__main__":
    main()
