"""The sandbox worker: a pre-warmed interpreter that forks one confined child per program.

:class:`ra3lab.evaluation.pool.SandboxPool` starts ``python -I sandbox.py <isolation>`` as root, once per
worker. That process, the *supervisor*, takes the uid ``UID_BASE + its pid``, enters its isolation and forks
the *zygote*, which imports common standard-library modules once and then serves requests: one JSON line
``{"source": str, "limits": {...}}`` on stdin is answered by one JSON line ``{"passed", "reason", "wall_s"}``
on stdout. Per program the zygote forks a child that confines itself and runs the program in place: no
interpreter start. Standard library only: this file runs outside the ``ra3lab`` package.

Every program gets
  * a fresh working directory of its own (owner: the worker's uid, mode 0700), removed afterwards;
  * the worker's uid and gid, no supplementary groups, no capabilities and ``no_new_privs``. The uid is never
    root and belongs to one live worker (it comes from the supervisor's pid), so a program cannot signal the
    zygote, the pool or another worker's programs, nor change a file it could not as an ordinary user;
  * its own session and process group, killed as a whole when the program ends, times out or floods its
    output; then every process still running as the worker's uid is killed and reaped (this catches a fork
    that left the group with ``setsid``), so nothing of a program lives on into the next one;
  * rlimits: address space ``memory_mb`` (an allocation past it raises MemoryError), CPU time ``cpu_s``
    (SIGXCPU, then SIGKILL a second later), ``processes`` processes and threads for its uid (a fork bomb gets
    EAGAIN), files of at most ``memory_mb``, no core dumps, no POSIX message queues, 256 open files;
  * stdin from /dev/null, stdout and stderr into one pipe the zygote drains and counts, killing the program
    once it has written more than ``output_bytes``; no other descriptor but fd 3, its report channel;
  * ``wall_s`` seconds of wall-clock time, measured by the zygote from the fork.

Isolation "namespaces" (root with CAP_SYS_ADMIN, Linux >= 5.12). Each worker has its own network namespace
(a loopback device that is down: no connection leaves it, to the host's 127.0.0.1 neither, and no abstract
unix socket of the host is reachable), PID namespace (the zygote is its init: a program sees only its own
processes; /proc is remounted to match, and every process dies with the zygote), IPC namespace, and mount
namespace in which every mount is read-only and nosuid, while /tmp, /var/tmp and /dev/shm are private tmpfs
mounts of ``SCRATCH_MB`` each, emptied after every program.

Isolation "seccomp", the weaker fallback where namespaces are refused (e.g. an unprivileged container).
Programs share the host's network stack, PID space and file system. A seccomp filter fails ``socket(2)`` and
``io_uring_setup(2)`` with EACCES, so no socket of any family can be opened (``socketpair`` still works),
and kills the process on a syscall of a foreign ABI (i386, x32); x86_64 and aarch64 only. Files and other
processes are protected by the uid alone: a program can read what is world-readable and see every process
in /proc, but not signal another user's process or write where only others may. What it leaves in /tmp,
/var/tmp or /dev/shm (or world-writable folders below them) is deleted after it ends.

Programs must read the interpreter. Where a folder above it is closed to other users (pyenv under /root),
a mount namespace (the worker's own under "namespaces"; one for this alone under "seccomp") covers that folder
with an empty tmpfs and mounts the interpreter's folders back in place, so the rest of it stays hidden; where
no mount namespace is permitted, the worker refuses to start and names the folder.

A program passes when its whole source ran to the end without an exception: only then does the harness
write the program's random token and "passed" to fd 3. ``sys.exit`` or ``os._exit`` before the end, a
crash, or a report without the token is a failure. Code written against this harness (reading the token out
of the interpreter's memory, which it shares) is beyond what the token guards against.
"""

from __future__ import annotations

import ctypes
import gc
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import socket
import stat
import sys
import tempfile
import time
import types

UID_BASE = 0x7000_0000      # worker uid = UID_BASE + supervisor pid: an unassigned range below 2**31
SCRATCH_MB = 256            # size of each private tmpfs under "namespaces"
PRIVATE_DIRS = ("/tmp", "/var/tmp", "/dev/shm")   # private under "namespaces", swept under "seccomp"
PRELOAD = ("bisect", "collections", "copy", "dataclasses", "datetime", "decimal", "fractions", "functools",
           "hashlib", "heapq", "itertools", "math", "operator", "random", "re", "statistics", "string", "typing")
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
REPORT_FD = 3
OPEN_FILES = 256
REASON_CHARS = 300
REAP_ROUNDS = 1000          # kill-and-reap rounds (1 ms apart) before a survivor is reported

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWPID, CLONE_NEWNET = 0x20000, 0x8000000, 0x20000000, 0x40000000
MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_PRIVATE = 0x2, 0x4, 0x8, 1 << 18
MS_REC, MOUNT_ATTR_RDONLY, MOUNT_ATTR_NOSUID, AT_RECURSIVE, AT_FDCWD = 0x4000, 0x1, 0x2, 0x8000, -100
SYS_OPEN_TREE, SYS_MOVE_MOUNT, SYS_MOUNT_SETATTR = 428, 429, 442      # the same on x86_64 and aarch64
OPEN_TREE_CLONE, MOVE_MOUNT_F_EMPTY_PATH = 0x1, 0x4
PR_SET_PDEATHSIG, PR_SET_SECCOMP, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 1, 22, 36, 38
SECCOMP_MODE_FILTER, SECCOMP_RET_KILL_PROCESS, SECCOMP_RET_ERRNO, SECCOMP_RET_ALLOW = 2, 0x80000000, 0x50000, 0x7FFF0000
# machine: (AUDIT_ARCH_*, socket, io_uring_setup); io_uring can open sockets without calling socket(2)
SECCOMP_ARCH = {"x86_64": (0xC000003E, 41, 425), "aarch64": (0xC00000B7, 198, 425)}

libc = ctypes.CDLL(None, use_errno=True)


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64), ("propagation", ctypes.c_uint64),
                ("userns_fd", ctypes.c_uint64)]


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def _checked(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _prctl(option: int, value: int) -> None:
    _checked(libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), ctypes.c_ulong(0), ctypes.c_ulong(0),
                        ctypes.c_ulong(0)), f"prctl({option})")


def _mount(source: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None) -> None:
    _checked(libc.mount(source, target.encode(), fstype, ctypes.c_ulong(flags), data), f"mount {target}")


def _interpreter_dirs() -> list[str]:
    """The folders programs must read: the interpreter's prefixes and its import path."""
    paths = {os.path.realpath(path) for path in (sys.base_prefix, sys.prefix, *sys.path) if os.path.isdir(path)}
    return sorted(path for path in paths
                  if not any(path.startswith(other + os.sep) for other in paths if other != "/"))


def _hidden(paths: list[str]) -> dict[str, list[str]]:
    """{the outermost folder other users cannot enter: the paths below it}."""
    hidden: dict[str, list[str]] = {}
    for path in paths:
        parts = path.split(os.sep)[1:]
        for depth in range(1, len(parts)):
            folder = os.sep + os.sep.join(parts[:depth])
            if not os.stat(folder).st_mode & stat.S_IXOTH:
                hidden.setdefault(folder, []).append(path)
                break
    return hidden


def _expose(folder: str, paths: list[str]) -> None:
    """Cover ``folder`` with an empty tmpfs and mount ``paths`` (folders below it) back at their places."""
    clones = []
    for path in paths:
        clone = libc.syscall(SYS_OPEN_TREE, AT_FDCWD, path.encode(), OPEN_TREE_CLONE | os.O_CLOEXEC | AT_RECURSIVE)
        _checked(0 if clone >= 0 else -1, f"open_tree {path}")
        clones.append(clone)
    _mount(b"tmpfs", folder, b"tmpfs", MS_NOSUID | MS_NODEV, b"size=1m,mode=0755")
    for path, clone in zip(paths, clones):
        os.makedirs(path, mode=0o755, exist_ok=True)
        _checked(libc.syscall(SYS_MOVE_MOUNT, clone, b"", AT_FDCWD, path.encode(), MOVE_MOUNT_F_EMPTY_PATH),
                 f"move_mount {path}")
        os.close(clone)


def _private_mounts() -> None:
    """Under "namespaces": every mount read-only and nosuid; private tmpfs on PRIVATE_DIRS."""
    attr = _MountAttr(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID, 0, 0, 0)
    _checked(libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, b"/", AT_RECURSIVE, ctypes.byref(attr), ctypes.sizeof(attr)),
             "mount_setattr /")
    for path in PRIVATE_DIRS:
        if os.path.isdir(path):
            _mount(b"tmpfs", path, b"tmpfs", MS_NOSUID | MS_NODEV,
                   f"size={SCRATCH_MB}m,nr_inodes=65536,mode=1777".encode())


def _deny_sockets() -> None:
    """Install the seccomp filter of the "seccomp" isolation (after ``no_new_privs``)."""
    arch, socket_nr, io_uring_nr = SECCOMP_ARCH[platform.machine()]
    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06     # BPF_LD|W|ABS, BPF_JMP|JEQ|K, BPF_JMP|JGE|K, BPF_RET|K
    program = [(load, 0, 0, 4),                                                   # seccomp_data.arch
               (jeq, 1, 0, arch), (ret, 0, 0, SECCOMP_RET_KILL_PROCESS),
               (load, 0, 0, 0),                                                   # seccomp_data.nr
               (jge, 0, 1, 0x40000000), (ret, 0, 0, SECCOMP_RET_KILL_PROCESS),   # the x32 ABI
               (jeq, 2, 0, socket_nr), (jeq, 1, 0, io_uring_nr),
               (ret, 0, 0, SECCOMP_RET_ALLOW), (ret, 0, 0, SECCOMP_RET_ERRNO | 13)]   # EACCES
    filters = (_SockFilter * len(program))(*(_SockFilter(*instruction) for instruction in program))
    fprog = _SockFprog(len(program), filters)
    _checked(libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(SECCOMP_MODE_FILTER), ctypes.byref(fprog),
                        ctypes.c_ulong(0), ctypes.c_ulong(0)), "seccomp")


def _become(uid: int) -> None:
    """Drop root for good: the worker's uid and gid, no groups (capabilities go with uid 0)."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _confine(uid: int, limits: dict, seccomp: bool) -> None:
    """In the forked child, still root: own session, rlimits, then the worker's uid with no way back."""
    os.setsid()
    memory = limits["memory_mb"] << 20
    cpu = max(1, math.ceil(limits["cpu_s"]))
    for kind, soft, hard in ((resource.RLIMIT_AS, memory, memory), (resource.RLIMIT_CPU, cpu, cpu + 1),
                             (resource.RLIMIT_NPROC, limits["processes"], limits["processes"]),
                             (resource.RLIMIT_FSIZE, memory, memory), (resource.RLIMIT_CORE, 0, 0),
                             (resource.RLIMIT_MSGQUEUE, 0, 0), (resource.RLIMIT_NOFILE, OPEN_FILES, OPEN_FILES)):
        resource.setrlimit(kind, (soft, hard))
    _become(uid)
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)      # set after the uid change, which clears it
    if seccomp:
        _deny_sockets()


def _describe(error: BaseException) -> str:
    """The last line of the traceback, ``Type: message``, on one line of at most REASON_CHARS."""
    kind = type(error)
    name = (kind.__qualname__ if kind.__module__ in ("builtins", "__main__")
            else f"{kind.__module__}.{kind.__qualname__}")
    try:
        message = str(error)
    except BaseException:  # noqa: BLE001 - the program's own __str__ may raise anything
        message = "<unprintable>"
    return " ".join(f"{name}: {message}".split() if message else [name])[:REASON_CHARS]


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:  # noqa: BLE001, S110 - the program may have replaced the stream; output is not judged
            pass


def _run(source: str, path: str, token: bytes) -> None:
    """Run ``source`` as ``__main__`` and report how it ended on fd 3; always ends the process."""
    write, exit_ = os.write, os._exit          # bound before the program can replace them

    def report(reason: str, status: int) -> None:
        write(REPORT_FD, token + b" " + reason.encode("utf-8", "replace") + b"\n")
        exit_(status)

    module = types.ModuleType("__main__")
    module.__file__ = path
    sys.modules["__main__"] = module
    sys.argv = [path]
    sys.path.insert(0, os.path.dirname(path))
    try:
        code = compile(source, path, "exec")
    except (SyntaxError, ValueError) as error:      # ValueError: a null byte in the source
        lineno = getattr(error, "lineno", None)
        where = f" (line {lineno})" if lineno else ""
        report(f"syntax error: {getattr(error, 'msg', error)}{where}"[:REASON_CHARS], 1)
        return
    try:
        exec(code, module.__dict__)  # noqa: S102 - running the program is the point
    except SystemExit as stop:
        _flush()
        status = stop.code
        exit_(0 if status is None else status & 0xFF if isinstance(status, int) else 1)
    except MemoryError:
        report("memory limit", 1)
    except BaseException as error:  # noqa: BLE001 - any exception fails the program
        report(f"failed: {_describe(error)}", 1)
    else:
        _flush()
        report("passed", 0)


def _child(source: str, workdir: str, token: bytes, limits: dict, uid: int, seccomp: bool, output: int,
           report: int) -> None:
    """The forked child: descriptors, working directory, confinement, a clean environment, then the program."""
    descriptors = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    os.dup2(report, REPORT_FD)
    os.closerange(REPORT_FD + 1, descriptors)
    os.chdir(workdir)
    _confine(uid, limits, seccomp)
    os.environ.clear()
    os.environ.update(ENV, HOME=workdir, TMPDIR=workdir)
    tempfile.tempdir = None
    _run(source, os.path.join(workdir, "program.py"), token)


def _signal_uid(uid: int) -> None:
    """SIGKILL every process of ``uid``: a child takes the uid and calls kill(-1), which reaches exactly those."""
    reaper = os.fork()
    if reaper == 0:
        try:
            _become(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(reaper, 0)


def _kill_all(uid: int, init: bool) -> None:
    """Kill and reap every process a program left; the zygote is their init or subreaper, so once it has no
    child left, none is left."""
    for _ in range(REAP_ROUNDS):
        try:
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        except ChildProcessError:
            return
        if init:                          # init of the worker's PID namespace: kill(-1) reaches only programs
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:
                pass
        else:
            _signal_uid(uid)
        time.sleep(0.001)
    raise RuntimeError(f"processes of uid {uid} survived {REAP_ROUNDS} rounds of SIGKILL")


def _remove(path: str, directory: bool) -> None:
    if directory:
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _sweep(folder: str, uid: int | None) -> None:
    """Delete what ``uid`` owns in ``folder`` and in world-writable folders below it (everything if None)."""
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        directory = stat.S_ISDIR(info.st_mode)
        if uid is None or info.st_uid == uid:
            _remove(entry.path, directory)
        elif directory and info.st_mode & stat.S_IWOTH:
            _sweep(entry.path, uid)


def _drain(fd: int, limit: int) -> tuple[int, bytes, bool]:
    """Read a non-blocking pipe dry: (bytes read, the last ``limit`` of them, whether its writers are gone)."""
    count, tail = 0, b""
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return count, tail, False
        if not data:
            return count, tail, True
        count, tail = count + len(data), (tail + data)[-limit:]


def _watch(pid: int, output: int, report: int, limits: dict, start: float, requests: int) \
        -> tuple[str | None, int, bytes]:
    """Drain the pipes until the child exits, breaks a limit, or the pool goes (``requests`` ends: the pool sends
    nothing while it waits for a verdict): (why it was stopped or None, output bytes, report tail)."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    for fd in (pidfd, output, report, requests):
        poller.register(fd, select.POLLIN)
    deadline, written, tail = start + limits["wall_s"], 0, b""
    try:
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                return "timeout", written, tail
            for fd, _ in poller.poll(left * 1000):
                if fd == pidfd:
                    return None, written, tail
                if fd == requests:
                    return "sandbox error: the pool closed", written, tail
                count, data, closed = _drain(fd, 4096)
                if closed:
                    poller.unregister(fd)
                if fd == output:
                    written += count
                    if written > limits["output_bytes"]:
                        return "output limit", written, tail
                else:
                    tail = (tail + data)[-4096:]
    finally:
        os.close(pidfd)


def _reason(limit: str | None, status: int, cpu_s: float, message: str | None, limits: dict, written: int) -> str:
    if written > limits["output_bytes"]:
        return "output limit"
    if message is not None:
        return message
    if limit is not None:
        return limit
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        cpu_limit = max(1, math.ceil(limits["cpu_s"]))
        if number == signal.SIGXCPU or (number == signal.SIGKILL and cpu_s >= cpu_limit - 0.01):
            return "timeout"
        return f"killed by signal {number}"
    return f"exit code {os.WEXITSTATUS(status)}"


class Zygote:
    """Runs programs one at a time as ``uid``; ``init``: it is the init of the worker's PID namespace."""

    def __init__(self, uid: int, init: bool, workroot: str):
        self.uid, self.init, self.workroot = uid, init, workroot
        self.workdir = os.path.join(workroot, "run")

    def execute(self, source: str, limits: dict, requests: int) -> dict:
        """Run one program; the verdict as a dict of passed, reason and wall_s."""
        token = os.urandom(16).hex().encode()
        os.mkdir(self.workdir, 0o700)
        path = os.path.join(self.workdir, "program.py")
        with open(path, "w", encoding="utf-8", errors="replace") as file:
            file.write(source)
        for owned in (path, self.workdir):
            os.chown(owned, self.uid, self.uid)
        output_r, output_w = os.pipe()
        report_r, report_w = os.pipe()
        for fd in (output_r, report_r):
            os.set_blocking(fd, False)
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                _child(source, self.workdir, token, limits, self.uid, not self.init, output_w, report_w)
            finally:
                os._exit(1)
        os.close(output_w)
        os.close(report_w)
        try:
            limit, written, tail = _watch(pid, output_r, report_r, limits, start, requests)
            wall = time.perf_counter() - start
            try:
                os.killpg(pid, signal.SIGKILL)        # the program's process group, forks included
            except ProcessLookupError:
                pass
            _, status, usage = os.wait4(pid, 0)
            self.clean()
            count, _, _ = _drain(output_r, 1)
            _, more, _ = _drain(report_r, 4096)
        finally:
            os.close(output_r)
            os.close(report_r)
        tail = (tail + more)[-4096:]
        at = tail.rfind(token + b" ")
        message = tail[at + len(token) + 1:].split(b"\n")[0].decode("utf-8", "replace") if at >= 0 else None
        reason = _reason(limit, status, usage.ru_utime + usage.ru_stime, message, limits, written + count)
        return {"passed": reason == "passed", "reason": reason, "wall_s": wall}

    def clean(self) -> None:
        """Kill and reap what is left of the program; delete its files."""
        _kill_all(self.uid, self.init)
        if self.init:
            for folder in PRIVATE_DIRS:
                _sweep(folder, None)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
            for folder in PRIVATE_DIRS:
                _sweep(folder, self.uid)

    def serve(self, requests: int, replies: int) -> None:
        """Answer request lines until the pool closes its end."""
        for line in os.fdopen(requests, "rb"):
            request = json.loads(line)
            reply = (json.dumps(self.execute(request["source"], request["limits"], requests)) + "\n").encode()
            while reply:
                reply = reply[os.write(replies, reply):]


def _sockets_denied(uid: int) -> bool:
    """Whether the seccomp filter works here: a child applies it and must be refused a socket."""
    pid = os.fork()
    if pid == 0:
        try:
            _become(uid)
            _prctl(PR_SET_NO_NEW_PRIVS, 1)
            _deny_sockets()
            try:
                socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()
            except PermissionError:
                os._exit(0)
        finally:
            os._exit(1)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def _unreadable(uid: int, paths: list[str]) -> str | None:
    """The first of ``paths`` that ``uid`` cannot list, if any."""
    pid = os.fork()
    if pid == 0:
        try:
            _become(uid)
            for index, path in enumerate(paths):
                try:
                    os.listdir(path)
                except OSError:
                    os._exit(index + 1)
            os._exit(0)
        finally:
            os._exit(255)
    index = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    return None if index == 0 else paths[index - 1] if index <= len(paths) else "?"


def _say(message: dict) -> None:
    os.write(1, (json.dumps(message) + "\n").encode())


def main(isolation: str) -> int:
    """The supervisor: isolation, the zygote, and cleanup once the zygote ends."""
    uid = UID_BASE + os.getpid()
    init = False
    if isolation in ("auto", "namespaces"):
        try:
            _checked(libc.unshare(CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWNET | CLONE_NEWPID), "unshare")
            init = True
        except OSError as error:
            if isolation == "namespaces":
                _say({"error": f"namespaces are not permitted here ({error})", "refused": True})
                return 1
    if not init and (platform.machine() not in SECCOMP_ARCH or not _sockets_denied(uid)):
        _say({"error": f"namespaces refused and no seccomp filter for {platform.machine()}: no network isolation",
              "refused": isolation == "seccomp"})
        return 1
    needed = _interpreter_dirs()
    hidden = _hidden(needed)
    if hidden and not init:
        try:
            _checked(libc.unshare(CLONE_NEWNS), "unshare")
        except OSError as error:
            _say({"error": f"programs could not read the interpreter: other users cannot enter "
                           f"{', '.join(hidden)}, and no mount namespace is permitted to expose it ({error})"})
            return 1
    if init or hidden:
        _mount(None, "/", None, MS_REC | MS_PRIVATE, None)    # nothing mounted here reaches the host
        for folder, paths in hidden.items():
            _expose(folder, paths)
    if init:
        _private_mounts()
        workroot = PRIVATE_DIRS[0]
    else:
        _signal_uid(uid)                  # a worker that died before its cleanup may have left the uid busy
        workroot = tempfile.mkdtemp(prefix="ra3lab-sandbox-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        os.chmod(workroot, 0o711)
    zygote = os.fork()
    if zygote == 0:
        try:
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if init:
                _mount(b"proc", "/proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None)
            else:
                _prctl(PR_SET_CHILD_SUBREAPER, 1)
            unreadable = _unreadable(uid, needed)
            if unreadable:
                _say({"error": f"programs cannot read the interpreter's folder {unreadable}"})
                os._exit(1)
            requests, replies = os.dup(0), os.dup(1)
            null = os.open(os.devnull, os.O_RDWR)
            os.dup2(null, 0)
            os.dup2(null, 1)
            os.close(null)
            for name in PRELOAD:
                __import__(name)
            gc.freeze()                   # forked children then leave the zygote's objects' pages shared
            hello = {"isolation": "namespaces" if init else "seccomp", "uid": uid}
            os.write(replies, (json.dumps(hello) + "\n").encode())
            Zygote(uid, init, workroot).serve(requests, replies)
        finally:
            os._exit(0)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)                      # only the zygote holds the pipes: the pool sees EOF when it ends
    os.dup2(null, 1)
    os.waitpid(zygote, 0)
    if not init:
        _signal_uid(uid)
        shutil.rmtree(workroot, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1]))
    except OSError as failure:
        _say({"error": f"sandbox setup failed: {failure}"})
        sys.exit(1)
