"""The Sandbox contract (pytest_oneshot/sandbox/__init__.py), one test per promise, on every backend
(see conftest.py). A backend that cannot keep a promise declares it in ``KNOWN_GAPS``: that test
skips with the reason instead of being left out."""

from __future__ import annotations

import hashlib
import os
import secrets
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from polling import wait_for
from sandbox_backends import Backend, OpenSandbox

from pytest_oneshot.change import read_archive, read_host_dir, read_upper
from pytest_oneshot.logcap import capped_output
from pytest_oneshot.sandbox import ExecResult, HostFilesWorkspace, Sandbox, repo_root


def sh(sandbox: Sandbox, script: str, **kwargs: object) -> ExecResult:
    return sandbox.exec(["sh", "-c", script], timeout=120, **kwargs)  # type: ignore[arg-type]


def _host_processes_with(token: str) -> list[str]:
    """Command lines of live processes naming ``token``, as the host sees them (containers included)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
        except OSError:
            continue
        if token in cmdline:
            found.append(cmdline)
    return found


# --- start --------------------------------------------------------------------------------------


def test_the_workspace_is_the_start_commit_alone(sandbox: Sandbox) -> None:
    assert sandbox.read_file("src/calc/__init__.py").endswith(b"return a - b\n")
    result = sh(sandbox, "git rev-list --all --count; git remote; git status --porcelain")
    assert (result.returncode, result.stdout) == (0, b"1\n"), result.text()


# --- exec ---------------------------------------------------------------------------------------


def test_a_failing_command_is_a_result_with_its_streams_apart(sandbox: Sandbox) -> None:
    result = sh(sandbox, "printf out; printf err >&2; exit 3")
    assert (result.returncode, result.stdout, result.stderr, result.timed_out) == (3, b"out", b"err", False)
    assert not result.ok and sh(sandbox, "true").ok


def test_a_command_that_cannot_run_is_a_result(sandbox: Sandbox) -> None:
    missing = sandbox.exec(["no-such-program-oneshot"], timeout=60)
    assert missing.returncode != 0 and not missing.timed_out
    assert b"no-such-program-oneshot" in missing.stdout + missing.stderr
    assert sandbox.exec(["true"], cwd="/no/such/dir", timeout=60).returncode != 0


def test_stdin_is_fed_or_else_closed(sandbox: Sandbox) -> None:
    data = b"fed\x00\xff\xfe not utf-8\n"
    assert sandbox.exec(["cat"], stdin=data, timeout=60).stdout == data
    closed = sandbox.exec(["cat"], timeout=60)  # would wait for ever on an open stdin
    assert (closed.returncode, closed.stdout, closed.timed_out) == (0, b"", False)


def test_the_environment_is_clean_plus_what_is_given(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ONESHOT_HOST_ONLY", "sk-contract-canary")
    env = sandbox.exec(["env"], env={"GIVEN": "yes", "SECRET": "s3cr=t"}, timeout=60).stdout.decode()
    assert "sk-contract-canary" not in env and "ONESHOT_HOST_ONLY" not in env
    assert "\nGIVEN=yes\n" in f"\n{env}" and "\nSECRET=s3cr=t\n" in f"\n{env}"


def test_cwd_is_the_workdir_unless_given(sandbox: Sandbox) -> None:
    assert sh(sandbox, "pwd").stdout.decode().strip() == sandbox.workdir
    assert sh(sandbox, "mkdir -p deeper/still").ok
    inner = f"{sandbox.workdir}/deeper/still"
    assert sh(sandbox, "pwd", cwd=inner).stdout.decode().strip() == inner


@pytest.mark.parametrize("to_file", [False, True], ids=["captured", "to-file"])
def test_a_timeout_kills_the_whole_tree_and_keeps_the_output(sandbox: Sandbox, tmp_path: Path, to_file: bool) -> None:
    token = secrets.randbelow(10**8) + 10**8  # unique sleeps: found on the host, whichever sandbox runs them
    # a child, a grandchild in its own session, and an orphan: all must die at the timeout
    script = f"echo before; sleep {token} & setsid sleep {token + 1} & (sleep {token + 2} &); exec sleep {token + 3}"
    log = tmp_path / "out.log"
    result = sandbox.exec(["bash", "-c", script], timeout=2, output=log if to_file else None)
    assert result.timed_out and not result.ok
    assert (log.read_bytes() if to_file else result.stdout) == b"before\n"
    sleeps = [f"sleep {token + index}" for index in range(4)]
    wait_for(lambda: not any(_host_processes_with(sleep) for sleep in sleeps), "every process of the command to die")


def test_large_output_and_input_in_both_directions_at_once(sandbox: Sandbox) -> None:
    data = bytes(range(256)) * 8192  # 2 MiB, every byte value: no decoding on the way, no deadlock
    result = sandbox.exec(["sh", "-c", "tee /dev/stderr"], stdin=data, timeout=120)
    assert result.ok and result.stdout == data and result.stderr == data


def test_output_goes_to_a_host_file_as_it_is_produced(sandbox: Sandbox, tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    # the command goes on only once the test has seen its first line in the host file
    script = "printf 'first\\377\\n'; while [ ! -e go ]; do sleep 0.05; done; echo second >&2"
    results: list[ExecResult] = []
    thread = threading.Thread(target=lambda: results.append(sh(sandbox, script, output=log)))
    thread.start()
    try:
        wait_for(lambda: log.exists() and log.read_bytes() == b"first\xff\n", "the first line in the host file")
    finally:
        sandbox.write_file("go", b"")  # from another thread while the command runs
        thread.join()
    assert results[0].ok and (results[0].stdout, results[0].stderr) == (b"", b"")
    assert log.read_bytes() == b"first\xff\nsecond\n"


def test_output_to_a_capped_log_keeps_its_head_and_tail(sandbox: Sandbox, tmp_path: Path) -> None:
    log = tmp_path / "agent.log"
    with capped_output(log, head=1000, tail=500) as sink:  # a pipe at that path, as the trial gives agents
        result = sh(sandbox, "echo first; yes | head -c 100000; echo last", output=sink)
    assert result.ok
    text = log.read_text()
    assert text.startswith("first\ny\n") and text.endswith("y\nlast\n") and len(text) < 1000 + 500 + 200


# --- files --------------------------------------------------------------------------------------


def test_written_files_are_read_back_and_seen_by_commands(sandbox: Sandbox) -> None:
    data = b"\x00\xff binary \xfe\n" * 1000
    sandbox.write_file("tests/deep/new/test_x.py", data)
    assert sandbox.read_file("tests/deep/new/test_x.py") == data
    assert sh(sandbox, "cat tests/deep/new/test_x.py").stdout == data
    sandbox.write_file("src/calc/__init__.py", b"replaced\n")
    assert sandbox.read_file("src/calc/__init__.py") == b"replaced\n"


def test_a_write_replaces_whatever_is_in_the_way(sandbox: Sandbox) -> None:
    assert sh(sandbox, "mkdir -p adir/sub && touch adir/sub/f && echo file > afile && chmod 000 afile").ok
    sandbox.write_file("adir", b"was a directory")
    sandbox.write_file("afile/below", b"was under a file")
    assert sandbox.read_file("adir") == b"was a directory"
    assert sandbox.read_file("afile/below") == b"was under a file"


def test_missing_files_are_file_not_found(sandbox: Sandbox) -> None:
    for missing in ("missing.txt", "no/such/dir/file", "README.md/below"):
        with pytest.raises(FileNotFoundError):
            sandbox.read_file(missing)


def test_a_directory_is_not_a_file(sandbox: Sandbox) -> None:
    with pytest.raises(IsADirectoryError):
        sandbox.read_file("src")


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape", "a/../../b", ""])
def test_paths_outside_the_workspace_are_refused(sandbox: Sandbox, path: str) -> None:
    with pytest.raises(PermissionError):
        sandbox.write_file(path, b"no")
    with pytest.raises(PermissionError):
        sandbox.read_file(path)


def test_symlinks_never_lead_out_of_the_workspace(sandbox: Sandbox, tmp_path: Path) -> None:
    outside = tmp_path / f"outside-{secrets.token_hex(4)}"  # a host path; in a container, a path of its own
    outside_dir = tmp_path / "outside-dir"
    outside_dir.mkdir()
    plant = f"mkdir -p {outside_dir} && ln -s {outside} target.txt && ln -s {outside_dir} tests && ln -s /etc peek"
    assert sh(sandbox, plant).ok
    sandbox.write_file("target.txt", b"mine")
    sandbox.write_file("tests/test_calc.py", b"hidden")
    assert not outside.exists() and not any(outside_dir.iterdir())
    assert sh(sandbox, f"test ! -e {outside} && ls -A {outside_dir}").stdout == b""
    after = sh(sandbox, "test ! -L target.txt && test ! -L tests && cat target.txt tests/test_calc.py")
    assert after.stdout == b"minehidden", after.text()
    for path in ("peek", "peek/hostname"):  # a symlink, and a path resolving through one out of the workspace
        with pytest.raises(PermissionError):
            sandbox.read_file(path)


# --- mounts, network, limits ----------------------------------------------------------------------


def test_mounts_are_read_only(open_sandbox: OpenSandbox, backend: Backend, tmp_path: Path) -> None:
    backend.gap("mounts")
    tool = tmp_path / "tools, with comma"
    tool.mkdir()
    (tool / "agent").write_text("binary")
    sandbox, _ = open_sandbox(mounts={tool: "/opt/agent"})
    assert sh(sandbox, "cat /opt/agent/agent").stdout == b"binary"
    result = sh(sandbox, "echo x > /opt/agent/agent")
    assert result.returncode != 0 and b"Read-only file system" in result.stderr
    assert (tool / "agent").read_text() == "binary"


def test_the_hosts_disk_and_mounts_are_out_of_reach(sandbox: Sandbox, backend: Backend) -> None:
    """Root in a sandbox must not open the host's disk (it would rewrite the harness) or mount anything."""
    backend.gap("privileges")
    disk = os.stat("/").st_dev
    node = f"disk-{secrets.token_hex(4)}"  # in the workspace: a sandbox's /tmp may forbid devices anyway
    device = sh(sandbox, f"mknod {node} b {os.major(disk)} {os.minor(disk)} && head -c 1 {node} >/dev/null")
    assert device.returncode != 0, device.text()
    assert b"Operation not permitted" in device.stderr or b"Permission denied" in device.stderr, device.text()
    mount = sh(sandbox, "mkdir -p /tmp/oneshot-mnt && mount -t tmpfs oneshot /tmp/oneshot-mnt")
    assert mount.returncode != 0, mount.text()


@pytest.fixture
def loopback_port() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def _connect(sandbox: Sandbox, port: int) -> ExecResult:
    return sandbox.exec(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"], timeout=60)


def test_network_none_reaches_nothing(open_sandbox: OpenSandbox, backend: Backend, loopback_port: int) -> None:
    backend.gap("network")
    sandbox, _ = open_sandbox()
    result = _connect(sandbox, loopback_port)
    assert result.returncode == 1 and b"Connection refused" in result.stderr, result.text()


def test_network_loopback_reaches_a_host_server(
    open_sandbox: OpenSandbox, backend: Backend, loopback_port: int
) -> None:
    backend.gap("loopback")
    sandbox, _ = open_sandbox(network="loopback")
    assert _connect(sandbox, loopback_port).ok


def test_the_memory_limit_kills_what_exceeds_it(open_sandbox: OpenSandbox, backend: Backend) -> None:
    backend.gap("limits")
    sandbox, _ = open_sandbox(memory_mb=128)
    assert sh(sandbox, "dd if=/dev/zero of=/dev/null bs=32M count=1 2>/dev/null").ok
    over = sh(sandbox, "dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null")
    assert over.returncode == 137, over.text()  # SIGKILLed by the OOM killer
    assert sh(sandbox, "true").ok, "the sandbox outlives the command"


def test_the_cpu_limit_is_the_cpus_given(open_sandbox: OpenSandbox, backend: Backend) -> None:
    backend.gap("limits")
    sandbox, _ = open_sandbox(cpus=0.5)
    cpu = sh(
        sandbox, "cd /sys/fs/cgroup && (cat cpu/cpu.cfs_quota_us cpu/cpu.cfs_period_us 2>/dev/null || cat cpu.max)"
    )
    quota, period = (int(value) for value in cpu.stdout.split())
    assert quota / period == 0.5


# --- archive, repo_root, stop ---------------------------------------------------------------------


def test_the_archive_is_the_whole_repo_under_its_first_member(open_sandbox: OpenSandbox, tmp_path: Path) -> None:
    sandbox, spec = open_sandbox(subdir="src")
    root = repo_root(sandbox, spec)
    assert root == str(Path(sandbox.workdir).parent)
    assert sh(sandbox, "git rev-parse --show-toplevel", cwd=root).stdout.decode().strip() == root
    sandbox.write_file("calc/new.py", b"new\n")
    assert sh(sandbox, "ln -s ../README.md link && mkdir -p ../top && echo t > ../top/file").ok
    with sandbox.archive_workspace() as archive, tarfile.open(fileobj=archive, mode="r|") as tar:
        members = [(member.name, member.type, member.linkname) for member in tar]
    first, kind, _ = members[0]
    assert kind == tarfile.DIRTYPE
    prefix = first.rstrip("/") + "/"
    assert all(name.startswith(prefix) for name, _, _ in members[1:])
    entries = {name.removeprefix(prefix): (kind, link) for name, kind, link in members[1:]}
    assert entries["src/link"] == (tarfile.SYMTYPE, "../README.md")
    assert {"src/calc/new.py", "top/file", "README.md"} <= set(entries)
    with sandbox.archive_workspace() as archive:  # as the trial reads it
        tree = read_archive(archive)
    assert tree.files["src/calc/new.py"].digest == hashlib.sha256(b"new\n").hexdigest() and "top/file" in tree.files


def test_the_archive_can_stop_every_process_first(sandbox: Sandbox) -> None:
    token = f"writer-{secrets.token_hex(6)}"
    loop = "while :; do echo x >> tick; sleep 0.05; done"
    assert sh(sandbox, f"setsid sh -c '{loop}' {token} >/dev/null 2>&1 </dev/null &").ok
    with sandbox.archive_workspace(stop_processes=True) as archive:
        tree = read_archive(archive)
    assert "src/calc/__init__.py" in tree.files
    wait_for(lambda: not _host_processes_with(token), "no process of the sandbox to survive the archive")


def test_files_on_this_host_read_as_the_archive(sandbox: Sandbox) -> None:
    """A backend that offers its workspace's files on this host (``host_files``, optional) gives the
    tree its archive gives: the harness then reads them itself, without tar."""
    files = sandbox.host_files() if isinstance(sandbox, HostFilesWorkspace) else None
    if files is None:
        pytest.skip("this backend offers no files on this host (optional): its archive is read")
    with sandbox.archive_workspace() as archive:
        fresh = read_archive(archive).files
    edits = "echo new > src/calc/new.py && rm src/calc/__init__.py && mkdir -p d/e && echo x > d/e/f && ln -s ../x d/l"
    assert sh(sandbox, edits).ok
    files = sandbox.host_files(stop_processes=True)
    assert files is not None
    tree = read_upper(files.upper, fresh) if files.upper else read_host_dir(files.root, baseline=fresh)
    with sandbox.archive_workspace() as archive:
        archived = read_archive(archive, baseline=fresh)
    assert tree.files == archived.files and tree.left_out == archived.left_out
    assert "src/calc/__init__.py" not in tree.files and tree.files["d/l"].target == "../x" and "d/e/f" in tree.files


def test_stop_is_idempotent(sandbox: Sandbox) -> None:
    sandbox.stop()
    sandbox.stop()


def test_cleanup_stale_spares_live_sandboxes(sandbox: Sandbox, backend: Backend) -> None:
    removed = backend.factory.cleanup_stale({})
    assert isinstance(removed, list) and all(isinstance(item, str) for item in removed)
    assert sh(sandbox, "true").ok and sandbox.read_file("README.md")
