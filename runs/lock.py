"""One writer per run folder: a job holds the lock of what it writes for its whole life, and a
shared lock of what it only reads, so two jobs never write one folder and none reads a folder
being written.

The lock is a POSIX record lock (fcntl) on a hidden file beside its target (`OUT/.clip.lock`
for `OUT/clip`): the kernel, or the NFS server, releases it when the holder ends, SIGKILL
included, so a lock is never stale. It is a process's lock (not its open file's, as flock's):
DataLoader workers forked while it is held do not keep it. The holder writes who it is (host,
pid, start time) into the file, for the sentence a second job stops with, and deletes the file
when it lets go, so nothing is left behind.

Where the file system has no working locks (an NFS mount with `nolock` or `local_lock=posix`,
where a lock is seen on its own node only; Lustre without `flock`, which refuses them), this is
detected and a heartbeat lock file takes their place: created exclusively, touched every
HEARTBEAT_SECONDS by a thread of the holder, and taken over once its time of last touch is
STALE_SECONDS old (at once when its holder is a dead process of this node). FALLBACK_VARIABLE
forces it where locks are silently per node and cannot be detected (BeeGFS by default).
stdlib only.
"""
import contextlib
import errno
import fcntl
import json
import os
import socket
import tempfile
import threading
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from runs.outputs import UserError

HEARTBEAT_SECONDS = 10.0
STALE_SECONDS = 60.0  # six missed heartbeats: the holder's node is gone, or its process
FALLBACK_VARIABLE = "DEBIASPL_LOCKS"  # "heartbeat": use the heartbeat files even where locks work
# What fcntl answers where the file system has no locks (ENOLCK: NFS without a lock manager).
NO_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# NFS mount options under which a POSIX lock is held on its own node only (nolock implies all).
NODE_LOCAL_LOCKS = ("local_lock=all", "local_lock=posix")


@dataclass(frozen=True)
class Holder:
    """Who holds a lock, as recorded in its file."""
    host: str
    pid: int
    started: str  # when it took the lock, ISO 8601 with its UTC offset
    shared: bool = False  # a reader's lock
    process_start: str = ""  # the pid's start time on its host (/proc), telling it from a reused pid

    @classmethod
    def this_process(cls, shared):
        return cls(socket.gethostname(), os.getpid(),
                   datetime.now().astimezone().isoformat(timespec="seconds"), shared,
                   process_start_time(os.getpid()))

    def line(self):
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_text(cls, text):
        """The last holder recorded in a lock file's text (its latest reader, or its writer);
        None when it records none."""
        for line in reversed(text.splitlines()):
            with contextlib.suppress(ValueError, TypeError):
                return cls(**json.loads(line))
        return None

    def is_dead_process_of_this_host(self):
        return self.host == socket.gethostname() and process_start_time(self.pid) != self.process_start


class FolderInUse(UserError):
    """Another job holds the lock of `target`: it writes it (or, when `holder.shared`, reads it)."""

    def __init__(self, target, holder, writing):
        self.target, self.holder, self.writing = Path(target), holder, writing
        who = ("another job" if holder is None else
               f"another job (host {holder.host}, pid {holder.pid}, since {holder.started})")
        doing = "reads" if holder is not None and holder.shared else "writes"
        fix = "wait for it to end, or pass another --out or --run-name" if writing else "wait for it to end"
        super().__init__(f"{target} is in use: {who} {doing} it; {fix}.")


def process_start_time(pid):
    """The start time of process `pid` in clock ticks since boot, '' when there is none."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def file_system_time(folder):
    """The time now by the clock of the file system holding `folder`: the modification time
    of a file made there (the nodes' own clocks may differ from the file server's)."""
    with tempfile.TemporaryFile(dir=folder) as probe:
        return os.fstat(probe.fileno()).st_mtime


def lock_file(target):
    """The lock file of a folder or file: hidden, beside it."""
    target = Path(target)
    return target.parent / f".{target.name}.lock"


def mount_options(path):
    """The mount and file-system options of the mount holding `path` (/proc/self/mountinfo),
    '' where they cannot be read."""
    path, best, options = os.path.realpath(path), "", ""
    with contextlib.suppress(OSError):
        with open("/proc/self/mountinfo") as mounts:
            for line in mounts:
                fields, _, fs_fields = line.partition(" - ")
                mount_point = fields.split()[4].replace("\\040", " ")
                inside = path == mount_point or path.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, options = mount_point, f"{fields.split()[5]},{fs_fields.split()[-1]}"
    return options


def locks_work(folder):
    """Whether POSIX locks in `folder` are seen by every node: not where a heartbeat is asked
    for, nor on an NFS mount whose locks are local to its node."""
    if os.environ.get(FALLBACK_VARIABLE) == "heartbeat":
        return False
    options = mount_options(folder).split(",")
    return not any(option in options for option in NODE_LOCAL_LOCKS)


class Lock:
    """What both kinds of lock share: release() lets go, then removes the folders that take()
    made for the lock file when they are still empty (a command that stopped early, such as a
    --from-cache run with a mistyped --out, leaves no folder)."""
    made_folders = ()

    def release(self):
        self.let_go()
        remove_if_empty(self.made_folders)


def remove_if_empty(folders):
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()


class KernelLock(Lock):
    """A POSIX lock on the target's lock file, held until release()."""

    def __init__(self, target, shared):
        self.target, self.shared, self.path = Path(target), shared, lock_file(target)
        holder = Holder.this_process(shared)
        while True:
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            try:
                fcntl.lockf(descriptor, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            except OSError as error:
                text = os.read(descriptor, 1 << 16).decode(errors="replace")
                os.close(descriptor)
                if error.errno in (errno.EAGAIN, errno.EACCES):
                    raise FolderInUse(target, Holder.from_text(text), not shared) from None
                raise
            # The holder before us may have deleted the file between our open and our lock: then
            # we hold the lock of a file nobody else will open, and take the new one instead.
            with contextlib.suppress(FileNotFoundError):
                if os.stat(self.path).st_ino == os.fstat(descriptor).st_ino:
                    break
            os.close(descriptor)
        if not shared:
            os.ftruncate(descriptor, 0)
        os.lseek(descriptor, 0, os.SEEK_END)
        os.write(descriptor, holder.line().encode())
        self.descriptor = descriptor

    def let_go(self):
        """Delete the file when no one else holds it (we then hold it alone, exclusively), and
        let go. A reader's conversion to exclusive is atomic for POSIX locks."""
        with contextlib.suppress(OSError):
            fcntl.lockf(self.descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.path.unlink()
        os.close(self.descriptor)  # closing releases every lock of this process on the file


class HeartbeatLock(Lock):
    """The fallback: a writer's file (the lock file, created exclusively) and one file per
    reader; each holder touches its file every HEARTBEAT_SECONDS. A writer makes its file before
    it looks for readers, and a reader before it looks for a writer, so of two that start at
    once at least one sees the other."""

    def __init__(self, target, shared):
        self.target, self.shared = Path(target), shared
        self.holder = Holder.this_process(shared)
        writer_file = lock_file(target)
        self.now = file_system_time(writer_file.parent)
        if shared:
            self.path = writer_file.with_name(f"{writer_file.name}.reader-{self.holder.host}-{os.getpid()}")
            self.path.write_text(self.holder.line())
            others = [writer_file]
        else:
            self.path = writer_file
            self.create_exclusively()
            others = sorted(writer_file.parent.glob(f"{writer_file.name}.reader-*"))
        for other in others:
            holder = self.fresh_holder(other)
            if holder is not None:
                self.path.unlink(missing_ok=True)
                raise FolderInUse(target, holder, not shared)
        self.stop = threading.Event()
        threading.Thread(target=self.beat, name="lock heartbeat", daemon=True).start()

    def create_exclusively(self):
        while True:
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = self.fresh_holder(self.path)
                if holder is not None:
                    raise FolderInUse(self.target, holder, True) from None
                continue  # a stale file, set aside by fresh_holder: try again
            with os.fdopen(descriptor, "w") as file:
                file.write(self.holder.line())
            return

    def fresh_holder(self, path):
        """The holder recorded in `path` when its heartbeat is fresh; else None, a stale file
        being set aside (renamed first: of several jobs that find it stale, one removes it)."""
        try:
            text, touched = path.read_text(), path.stat().st_mtime
        except FileNotFoundError:
            return None
        holder = Holder.from_text(text)
        if (holder is not None and self.now - touched < STALE_SECONDS
                and not holder.is_dead_process_of_this_host()):
            return holder
        with contextlib.suppress(FileNotFoundError):
            stale = path.with_name(f"{path.name}.stale-{socket.gethostname()}-{os.getpid()}")
            path.rename(stale)
            stale.unlink()
        return None

    def beat(self):
        while not self.stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(OSError):
                os.utime(self.path)

    def let_go(self):
        self.stop.set()
        self.path.unlink(missing_ok=True)


def take(target, shared=False):
    """The lock of `target` (a folder or file, which need not exist yet; its parent is made):
    exclusive to write it, shared to read it. Raises FolderInUse when another job holds it."""
    folder = Path(target).parent
    made = [path for path in (folder, *folder.parents) if not path.exists()]  # the deepest first
    folder.mkdir(parents=True, exist_ok=True)
    try:
        taken = kind_that_works(target, shared)
    except BaseException:
        remove_if_empty(made)
        raise
    taken.made_folders = made
    return taken


def kind_that_works(target, shared):
    if locks_work(Path(target).parent):
        try:
            return KernelLock(target, shared)
        except OSError as error:
            if error.errno not in NO_LOCKS:
                raise
    return HeartbeatLock(target, shared)


@contextlib.contextmanager
def hold(writes=(), reads=(), enabled=True):
    """Inside the block, hold the exclusive lock of every target in `writes` and a shared lock
    of every one in `reads` (those it also writes excepted); nothing when not `enabled` (the
    other processes of a torchrun job, whose main process holds them)."""
    with contextlib.ExitStack() as held:
        if enabled:
            writes = [Path(target) for target in writes]
            for target, shared in [*((target, False) for target in writes),
                                   *((Path(target), True) for target in reads
                                     if Path(target) not in writes)]:
                held.callback(take(target, shared).release)
        yield
