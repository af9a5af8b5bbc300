"""The sandbox against hostile programs, under each isolation the host permits: every attack must end as a
failure with its reason, and leave this process, its files, the pool and the process table as they were."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from ra3lab.errors import ConfigError
from ra3lab.evaluation import Limits, SandboxPool, check_completion, run_program
from ra3lab.evaluation.sandbox import PRIVATE_DIRS

LIMITS = Limits(wall_s=5.0, cpu_s=5.0, memory_mb=256, output_bytes=4096, processes=8)   # ample: programs that end
SHORT = Limits(wall_s=1.0, cpu_s=1.0, memory_mb=256, output_bytes=4096, processes=8)    # for those that never do
CONTENT = "the host's file\n"


@pytest.fixture(scope="module", params=["namespaces", "seccomp"])
def pool(request):
    try:
        pool = SandboxPool(workers=2, isolation=request.param)
    except ConfigError as refused:
        pytest.skip(f"{request.param} isolation refused on this host: {refused}")
    with pool:
        yield pool


def run(pool: SandboxPool, *sources: str, limits: Limits = LIMITS):
    verdicts = pool.run(list(sources), limits)
    assert all(verdict.isolation == pool.isolation for verdict in verdicts)
    return verdicts


def processes_of(uids: list[int]) -> list[int]:
    """Pids of live processes whose real uid is one of ``uids``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            if int(uid) in uids:
                found.append(int(entry.name))
    return found


def test_passing_and_failing_programs(pool):
    passing, failing, syntax, typo = run(pool, "def f(x):\n    return x + 1\nassert f(1) == 2\nprint(f(1))\n",
                                         "assert 1 + 1 == 3, 'arithmetic'", "def f(:\n    pass", "prnt('x')")
    assert passing.passed and passing.reason == "passed" and 0 < passing.wall_s < 1
    assert not failing.passed and failing.reason == "failed: AssertionError: arithmetic"
    assert not syntax.passed and syntax.reason.startswith("syntax error: ") and "(line 1)" in syntax.reason
    assert typo.reason == "failed: NameError: name 'prnt' is not defined"


def test_infinite_loop_times_out(pool):
    (wall,) = run(pool, "while True:\n    pass", limits=SHORT)
    (cpu,) = run(pool, "while True:\n    pass", limits=Limits(wall_s=20.0, cpu_s=1.0, memory_mb=256))
    assert (wall.passed, wall.reason) == (False, "timeout") and 1.0 <= wall.wall_s < 2.0
    assert (cpu.passed, cpu.reason) == (False, "timeout") and cpu.wall_s < 19.0   # RLIMIT_CPU, long before the wall


def test_fork_bomb_is_contained_and_nothing_survives(pool):
    bomb, escape = run(pool, "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
                       "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
                       "        time.sleep(60)\n", limits=SHORT)
    assert not bomb.passed and bomb.reason == "timeout"
    assert escape.passed          # its detached grandchild is killed when it ends
    assert processes_of(pool.uids) == []
    assert run(pool, "pass")[0].passed


def test_memory_hog_hits_the_memory_limit(pool):
    verdicts = run(pool, "x = bytearray(1 << 30)", "chunks = []\nwhile True:\n    chunks.append(bytearray(1 << 20))")
    assert [(verdict.passed, verdict.reason) for verdict in verdicts] == [(False, "memory limit")] * 2


def test_output_flood_hits_the_output_limit(pool):
    verdicts = run(pool, "while True:\n    print('x' * 100)", "import os\nwhile True:\n    os.write(2, b'y' * 1000)",
                   "print('z' * 5000)")
    assert [(verdict.passed, verdict.reason) for verdict in verdicts] == [(False, "output limit")] * 3


@pytest.fixture
def sentinel(tmp_path):
    """A world-readable file in tmp_path, whose folders every user may enter while the test runs."""
    opened = [folder for folder in (tmp_path, *tmp_path.parents) if not folder.stat().st_mode & stat.S_IXOTH]
    modes = {folder: folder.stat().st_mode for folder in opened}
    for folder in opened:
        folder.chmod(modes[folder] | stat.S_IXOTH | stat.S_IXGRP)
    tmp_path.chmod(0o755)
    path = tmp_path / "sentinel.txt"
    path.write_text(CONTENT)
    path.chmod(0o644)
    yield path
    for folder, mode in modes.items():
        folder.chmod(mode)


def test_files_outside_its_folder_are_safe(pool, sentinel):
    before = sentinel.stat()
    attacks = [f"import os\nos.remove({str(sentinel)!r})", f"open({str(sentinel)!r}, 'w').write('gone')",
               f"open({str(sentinel)!r}, 'a').write('more')", f"import os\nos.chmod({str(sentinel)!r}, 0o777)",
               f"import os\nos.rename({str(sentinel)!r}, {str(sentinel)!r} + '.moved')",
               f"import shutil\nshutil.rmtree({str(sentinel.parent)!r})",
               f"import os\nos.truncate({str(sentinel)!r}, 0)"]
    read, *verdicts = run(pool, f"assert open({str(sentinel)!r}).read() == {CONTENT!r}", *attacks)
    hidden = pool.isolation == "namespaces" and any(sentinel.is_relative_to(folder) for folder in PRIVATE_DIRS)
    assert read.passed != hidden        # readable, as to any user, unless a private /tmp hides it
    for attack, verdict in zip(attacks, verdicts):
        assert not verdict.passed, attack
        assert verdict.reason.startswith(("failed: PermissionError", "failed: FileNotFoundError")), verdict.reason
    after = sentinel.stat()
    assert sentinel.read_text() == CONTENT
    assert (after.st_mode, after.st_uid, after.st_ino, after.st_mtime_ns) == \
        (before.st_mode, before.st_uid, before.st_ino, before.st_mtime_ns)


def test_no_file_appears_outside_its_folder(pool):
    outside = Path(__file__).with_name("written-by-a-sandboxed-program.txt")
    verdicts = run(pool, f"open({str(outside)!r}, 'w').write('escaped')",
                   f"import os\nos.mkdir({str(outside)!r})", "open('/escaped.txt', 'w').write('escaped')")
    escaped = outside.exists() or Path("/escaped.txt").exists()
    outside.unlink(missing_ok=True)
    assert not escaped
    for verdict in verdicts:
        assert verdict.reason.startswith(("failed: PermissionError: [Errno 13]", "failed: OSError: [Errno 30]",
                                          "failed: FileNotFoundError: [Errno 2]")), verdict.reason
        # refused to the uid; under namespaces, also a read-only file system, and /tmp (where a checkout may
        # live) is the sandbox's own private tmpfs, in which the folder does not exist


def test_working_folder_is_fresh_private_and_removed(pool):
    source = ("import os, stat\nhere = os.getcwd()\nassert sorted(os.listdir(here)) == ['program.py']\n"
              "assert os.stat(here).st_uid == os.getuid() != 0 and stat.S_IMODE(os.stat(here).st_mode) == 0o700\n"
              "open('scratch.txt', 'w').write('mine')\n"
              "assert sorted(int(fd) for fd in os.listdir('/proc/self/fd'))[:4] == [0, 1, 2, 3]\n"
              "assert len(os.listdir('/proc/self/fd')) == 5   # 0-2, the report channel, and this listing\n"
              "raise RuntimeError(here)")
    first, second = run(pool, source, source)
    for verdict in (first, second):
        assert verdict.reason.startswith("failed: RuntimeError: /"), verdict.reason
        assert not Path(verdict.reason.removeprefix("failed: RuntimeError: ")).exists()


def test_network_connections_do_not_arrive(pool):
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        udp.bind(("127.0.0.1", 0))
        tcp_port, udp_port = tcp.getsockname()[1], udp.getsockname()[1]
        verdicts = run(pool, f"import socket\nsocket.create_connection(('127.0.0.1', {tcp_port}), timeout=0.5)",
                       f"import socket\ns = socket.socket()\ns.settimeout(0.5)\ns.connect(('127.0.0.1', {tcp_port}))",
                       f"import socket\nsocket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', "
                       f"('127.0.0.1', {udp_port}))\nraise SystemExit(1)")
        for verdict in verdicts:
            assert not verdict.passed
            assert verdict.reason.startswith(("failed: OSError: [Errno 101]", "failed: PermissionError: [Errno 13]",
                                              "exit code 1")), verdict.reason
        for listener in (tcp, udp):
            listener.settimeout(0.3)
            with pytest.raises(TimeoutError):
                listener.accept() if listener is tcp else listener.recv(1)


def test_killing_the_parent_or_this_process_fails(pool):
    uids = pool.uids
    verdicts = run(pool, "import os\nos.kill(os.getppid(), 9)\nassert False, 'still here'",
                   "import os\nos.killpg(os.getpgid(os.getppid()), 9)\nassert False, 'still here'",
                   f"import os\nos.kill({os.getpid()}, 9)", f"import os\nos.killpg(os.getpgid({os.getpid()}), 9)",
                   "import os\nos.kill(-1, 9)\nassert False, 'still here'", "import os\nos.killpg(0, 9)")
    for verdict in verdicts:
        assert not verdict.passed, verdict
    assert pool.uids == uids                                  # no worker died and was replaced
    assert all(verdict.passed for verdict in run(pool, "pass", "pass", "pass"))


def test_leaving_early_is_no_pass(pool):
    verdicts = run(pool, "import sys\nsys.exit(0)\nassert False", "import os\nos._exit(0)", "raise SystemExit",
                   "exit()", "import os\nos.write(3, b'passed\\n')\nos._exit(0)",
                   "import atexit, os\natexit.register(lambda: os.write(3, b'passed\\n'))\nraise ValueError('no')")
    assert [verdict.reason for verdict in verdicts[:4]] == ["exit code 0"] * 4
    assert not any(verdict.passed for verdict in verdicts)
    task = {"task_id": "t/0", "prompt": "def add(a, b):\n", "entry_point": "add",
            "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}
    assert check_completion(task, "    return a + b\n", LIMITS).passed
    assert check_completion(task, "    import sys\n    sys.exit(0)\n", LIMITS).reason == "exit code 0"


def test_deep_recursion_is_a_failure(pool):
    recursion, after = run(pool, "def down(n):\n    return down(n + 1)\ndown(0)", "pass")
    assert not recursion.passed and recursion.reason.startswith("failed: RecursionError: maximum recursion depth")
    assert after.passed


def test_many_programs_in_order(pool):
    sources = [f"assert {i} % 3 != 0, {i}" for i in range(30)]
    verdicts = pool.run(sources, LIMITS)
    assert [verdict.passed for verdict in verdicts] == [i % 3 != 0 for i in range(30)]
    assert [verdict.reason for verdict in verdicts if not verdict.passed] == \
        [f"failed: AssertionError: {i}" for i in range(0, 30, 3)]


def test_run_program_uses_a_shared_pool():
    assert run_program("import math\nassert math.gcd(12, 18) == 6", LIMITS).passed
    assert run_program("1 / 0", LIMITS).reason == "failed: ZeroDivisionError: division by zero"


@pytest.mark.parametrize("field, value", [("wall_s", 0), ("cpu_s", -1.0), ("memory_mb", 8), ("output_bytes", -1),
                                          ("processes", 0), ("wall_s", True), ("memory_mb", 1.5)])
def test_bad_limits(field, value):
    with pytest.raises(ConfigError, match=field):
        Limits(**{field: value})


@pytest.mark.parametrize("kwargs, field", [({"workers": 0}, "workers"), ({"isolation": "none"}, "isolation")])
def test_bad_pool(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        SandboxPool(**kwargs)
