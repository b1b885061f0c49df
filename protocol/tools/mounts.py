"""The file system a sandboxed script sees: bwrap's arguments for the mounts, the environment it sets and the
capabilities it drops. Only what scripts need is bound (the system read-only with /etc's secrets masked,
Python, medbuilder's own package folders, the dataset roots read-only, the workspace read-write); /proc/sys
is read-only; /home, /root, /run, /var and the like are empty."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from medbuilder.protocol.tools.cgroups import MIB

# Under /etc: what a script has no business reading (folders hidden by an empty tmpfs, files by /dev/null).
ETC_SECRETS = ("shadow", "shadow-", "gshadow", "gshadow-", "sudoers", "sudoers.d", "ssh", "ssl/private",
               "security/opasswd", "postgresql", "medbuilder")
# Empty in the sandbox: other users' homes, root's home, sockets and state under /run and /var (PostgreSQL's).
EMPTY_DIRS = ("/home", "/root", "/run", "/var", "/mnt", "/media", "/srv", "/opt")
EMPTY_DIR_MIB = 64
SANDBOX_HOME = "/home/sandbox"
MEDBUILDER_PACKAGES = ("medbuilder", "medbuilder.protocol", "medbuilder.agents", "medbuilder.tasks",
                       "medbuilder.flows", "medbuilder.dashboards")


def bwrap_argv(bwrap: str, workspace: Path, read_roots=(), tmp_mib: int = 2048, switch_user: bool = False) -> list[str]:
    """Only what scripts need: the system (read-only, /etc's secrets masked), Python and medbuilder's code,
    the dataset roots read-only, the workspace read-write; /proc/sys read-only; empty /home, /root, /run, /var."""
    size = str(tmp_mib * MIB)
    argv = [bwrap, *_system_binds(), "--dev", "/dev", "--proc", "/proc", *_proc_read_only(),
            "--perms", "1777", "--size", size, "--tmpfs", "/tmp",
            "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    for empty in EMPTY_DIRS:
        argv += ["--size", str(EMPTY_DIR_MIB * MIB), "--tmpfs", empty]
    argv += ["--perms", "1777", "--dir", SANDBOX_HOME, "--setenv", "HOME", SANDBOX_HOME,
             "--setenv", "USER", "sandbox", "--setenv", "LOGNAME", "sandbox"]
    made: set[str] = set()
    for needed in code_paths():
        argv += [*_parent_dirs(needed, made), "--ro-bind", str(needed), str(needed)]
    for root in read_roots:
        root = Path(root).resolve()
        argv += [*_parent_dirs(root, made), "--ro-bind", str(root), str(root)]
    argv += [*_parent_dirs(Path(workspace), made), "--bind", str(workspace), str(workspace)]
    argv += _matplotlib_cache()
    argv += ["--unshare-net", "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--chdir", str(workspace)]
    # bwrap keeps root's capabilities (a script could remount / read-write); others have none to drop. To switch
    # to the sandbox uid, setpriv needs CAP_SETUID/CAP_SETGID: the switch to a non-root uid then clears them all.
    if os.geteuid() != 0:
        return argv
    return argv + ["--cap-drop", "ALL"] + (["--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"] if switch_user else [])


def _parent_dirs(path: Path, made: set[str]) -> list[str]:
    """The folders above a bind, made 0755 (bwrap would make them 0700, closed to the sandbox uid)."""
    argv = []
    for parent in reversed(Path(path).parents):
        text = str(parent)
        if parent == Path("/") or text in made or text in EMPTY_DIRS or text in ("/tmp", "/usr", "/etc"):
            continue
        made.add(text)
        argv += ["--perms", "0755", "--dir", text]
    return argv


def _system_binds() -> list[str]:
    argv = ["--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        path = Path(top)
        if path.is_symlink():
            argv += ["--symlink", os.readlink(path), top]
        elif path.is_dir():
            argv += ["--ro-bind", top, top]
    argv += ["--ro-bind", "/etc", "/etc"]
    for name in ETC_SECRETS:
        path = Path("/etc") / name
        if path.is_dir() and not path.is_symlink():
            argv += ["--tmpfs", str(path)]
        elif path.exists() or path.is_symlink():
            argv += ["--ro-bind", "/dev/null", str(path)]
    return argv + ["--ro-bind-try", "/sys/devices/system/cpu", "/sys/devices/system/cpu"]


def _proc_read_only() -> list[str]:
    """As uid 0 bwrap leaves /proc/sys writable (a host kernel setting, core_pattern), caps dropped or not."""
    return ["--ro-bind", "/proc/sys", "/proc/sys", "--ro-bind-try", "/proc/sysrq-trigger", "/proc/sysrq-trigger"]


def code_paths() -> list[Path]:
    """Python (the venv and its base) and medbuilder's own packages (an editable install reads them in place)."""
    import importlib.util

    paths = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    for package in MEDBUILDER_PACKAGES:
        spec = importlib.util.find_spec(package)
        paths.update(Path(p).resolve() for p in (spec.submodule_search_locations or []) if spec)
    return sorted(p for p in paths if not any(p != other and p.is_relative_to(other) for other in paths))


def _matplotlib_cache() -> list[str]:
    """HOME is read-only: give matplotlib a writable cache in /tmp holding the host's font list (no rebuild)."""
    if "MPLCONFIGDIR" in os.environ:
        return []
    argv = ["--setenv", "MPLCONFIGDIR", "/tmp/matplotlib", "--perms", "1777", "--dir", "/tmp/matplotlib"]
    host_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "matplotlib"
    for fontlist in sorted(host_cache.glob("fontlist-*.json")):
        argv += ["--ro-bind", str(fontlist), f"/tmp/matplotlib/{fontlist.name}"]
    return argv
