"""One writer per run folder (runs/lock.py): a second job stops at once and names the holder; a
holder's death frees the lock, SIGKILL included; readers share; and where the file system has
no working locks, the heartbeat files do the same. A lock only conflicts with another process's
(POSIX locks), so the other job is a subprocess here."""
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from runs import lock
from conftest import PROJECT_DIR, hang_guard, run_cli

HOLD = """
import sys
sys.path.insert(0, {project!r})
from runs import lock
held = lock.take({target!r}, shared={shared})
print("held", flush=True)
sys.stdin.read()
held.release()
"""


@contextmanager
def held_elsewhere(target, shared=False, heartbeat=False):
    """A process holding the lock of `target` until the block ends; yields its Popen."""
    environment = {**os.environ, **({lock.FALLBACK_VARIABLE: "heartbeat"} if heartbeat else {})}
    holder = subprocess.Popen([sys.executable, "-c", HOLD.format(project=str(PROJECT_DIR), target=str(target),
                                                                 shared=shared)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=environment)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=30)


@pytest.fixture(params=["kernel", "heartbeat"])
def locks(request, monkeypatch):
    """Each test with POSIX locks, then with the heartbeat files that replace them."""
    if request.param == "heartbeat":
        monkeypatch.setenv(lock.FALLBACK_VARIABLE, "heartbeat")
    return request.param


def test_a_second_writer_stops_at_once_naming_the_holder(tmp_path, locks):
    target = tmp_path / "clip"
    with held_elsewhere(target, heartbeat=locks == "heartbeat") as holder:
        # At once: a lock that waited for its holder would wait until this block ends.
        with hang_guard(30), pytest.raises(lock.FolderInUse) as refused:
            lock.take(target)
        with pytest.raises(lock.FolderInUse):
            lock.take(target, shared=True)  # nor may anyone read it meanwhile
    error = refused.value
    assert (error.holder.host, error.holder.pid) == (socket.gethostname(), holder.pid)
    assert abs(time.time() - time.mktime(time.strptime(error.holder.started[:19], "%Y-%m-%dT%H:%M:%S"))) < 60
    assert str(error) == (f"{target} is in use: another job (host {socket.gethostname()}, pid {holder.pid}, "
                          f"since {error.holder.started}) writes it; wait for it to end, or pass "
                          "another --out or --run-name.")


def test_readers_share_and_keep_writers_out(tmp_path, locks):
    target = tmp_path / "clip"
    with held_elsewhere(target, shared=True, heartbeat=locks == "heartbeat"):
        lock.take(target, shared=True).release()
        with pytest.raises(lock.FolderInUse, match="another job .* reads it; wait for it to end"):
            lock.take(target)
    writer = lock.take(target)  # the reader gone
    writer.release()
    assert list(tmp_path.iterdir()) == []  # nothing left behind


def test_a_killed_holders_lock_is_free_at_once(tmp_path, locks):
    target = tmp_path / "clip"
    with held_elsewhere(target, heartbeat=locks == "heartbeat") as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
        # The kernel released it; a heartbeat file names a dead process of this host.
        lock.take(target).release()


def test_a_heartbeat_gone_stale_is_taken_over(tmp_path, monkeypatch):
    """A holder on another node that stopped beating: its file is old by the file server's clock."""
    monkeypatch.setenv(lock.FALLBACK_VARIABLE, "heartbeat")
    target = tmp_path / "clip"
    other = lock.Holder("node-7", 12345, "2026-01-01T00:00:00+00:00")
    lock.lock_file(target).write_text(other.line())
    with pytest.raises(lock.FolderInUse, match="host node-7, pid 12345"):
        lock.take(target)
    touched = lock.file_system_time(tmp_path) - lock.STALE_SECONDS - 1
    os.utime(lock.lock_file(target), (touched, touched))
    taken = lock.take(target)
    assert lock.Holder.from_text(lock.lock_file(target).read_text()).pid == os.getpid()
    taken.release()


def test_file_systems_without_working_locks_get_the_heartbeat(tmp_path, monkeypatch):
    # An NFS mount with nolock: its locks would be seen on this node only.
    monkeypatch.setattr(lock, "mount_options", lambda path: "rw,vers=3,local_lock=all,addr=10.0.0.1")
    assert not lock.locks_work(tmp_path)
    assert isinstance(lock.take(tmp_path / "a"), lock.HeartbeatLock)
    monkeypatch.setattr(lock, "mount_options", lambda path: "rw,vers=4.2,local_lock=none")
    assert lock.locks_work(tmp_path)

    def refused(descriptor, operation):  # Lustre without -o flock, NFS without its lock manager
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))
    monkeypatch.setattr(lock.fcntl, "lockf", refused)
    assert isinstance(lock.take(tmp_path / "b"), lock.HeartbeatLock)


@pytest.mark.skipif(not shutil.which("findmnt"), reason="util-linux's findmnt is the oracle")
@pytest.mark.parametrize("path", ["/proc/self", "/tmp", str(PROJECT_DIR)])
def test_mount_options_are_those_of_the_mount_holding_the_path(path):
    options = subprocess.run(["findmnt", "-no", "OPTIONS,FS-OPTIONS", "--target", path], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
    assert set(lock.mount_options(path).split(",")) == set(",".join(options).split(","))


def test_training_free_run_and_report_refuse_while_their_source_is_written(clip_out, capsys):
    with held_elsewhere(clip_out / "clip") as holder:
        assert run_cli("--model", "clip-la", "--out", clip_out) == 2
        assert f"{clip_out / 'clip'} is in use: another job (host {socket.gethostname()}, pid {holder.pid}" \
            in capsys.readouterr().err
        assert run_cli("--report", "--out", clip_out) == 2
        assert "writes it; wait for it to end." in capsys.readouterr().err
    assert not (clip_out / "clip-la").exists() and not (clip_out / "report.pdf").exists()


def test_a_command_that_stops_early_leaves_no_folder(tmp_path, capsys):
    assert run_cli("--model", "clip", "--from-cache", "--out", tmp_path / "typo" / "out") == 2
    assert f"error: there is no cache at {tmp_path / 'typo' / 'out' / 'clip'}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
