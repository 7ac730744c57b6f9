"""One writer per output (a prepared HDF5 file, a runs folder), across processes and hosts sharing a disk.

The lock file is created with O_CREAT|O_EXCL, holds "pid host", the holder's command line and what it is
(`ferbench evaluate`, `ferbench runs prune`, ...), and is flock'ed while held, so a lock left by a dead writer
(kill -9) is recognised as stale without trusting the pid alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from ferbench.errors import FerbenchError

try:
    import fcntl
except ImportError:  # not POSIX: the pid check alone decides whether a lock is stale
    fcntl = None  # type: ignore[assignment]


def pid_alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


class WriteLock:
    """`<output>.lock`: created with O_CREAT|O_EXCL, holds "pid host", and is flock'ed while held.

    The flock is released by the kernel when the holder dies, so a leftover lock is recognised as stale
    without trusting the pid alone; a lock whose pid is alive on this host is never taken over.
    """

    def __init__(self, path: Path, target: Path, what: str = "ferbench prepare"):
        self.path, self.target, self.what = Path(path), Path(target), what
        self.fd: int | None = None

    def _refuse(self, pid: str, host: str, command: str = "", what: str = "") -> FerbenchError:
        """The holder named by what it says it is (an evaluate refuses a prune); a lock of an older ferbench
        does not say, and is named as one of ours."""
        where = f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"
        running = f" running `{command}`" if command else ""
        return FerbenchError(
            f"another {what or self.what} is writing {self.target} ({where}){running}; wait for it to "
            f"finish (if no such process exists, delete {self.path})"
        )

    @staticmethod
    def _read(fd: int) -> tuple[str, str, str, str]:
        """(pid, host, command, what) as the holder wrote them: "pid host" on line 1, its command line on line 2,
        what it is on line 3 (empty in a lock of an older ferbench)."""
        os.lseek(fd, 0, os.SEEK_SET)
        lines = os.read(fd, 8192).decode("utf-8", "replace").splitlines()
        parts = lines[0].split() if lines else []
        command = lines[1].strip() if len(lines) > 1 else ""
        what = lines[2].strip() if len(lines) > 2 else ""
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else ""), command, what

    def _take_over(self) -> int | None:
        """An existing lock file: return its fd (flock'ed) if stale, None to retry creating, else raise."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            try:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise self._refuse(*self._read(fd)) from None
            st = os.fstat(fd)
            try:
                cur = os.stat(self.path)
            except FileNotFoundError:
                os.close(fd)
                return None
            if (st.st_ino, st.st_dev) != (cur.st_ino, cur.st_dev):  # replaced meanwhile
                os.close(fd)
                return None
            holder = self._read(fd)
            pid, host = holder[:2]
            if not pid and time.time() - st.st_mtime < 10:  # its creator has not written its pid yet
                raise self._refuse("?", "")
            if host and host != socket.gethostname():
                raise self._refuse(*holder)
            if pid.isdigit() and (int(pid) == os.getpid() or pid_alive(int(pid))):
                raise self._refuse(*holder)
            return fd  # stale (holder dead): ours now
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise

    def acquire(self) -> None:
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_EX)  # our own new file; a prober holds it for microseconds at most
            except FileExistsError:
                fd = self._take_over()
                if fd is None:
                    continue
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            command = shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv and sys.argv[0] else "python"
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n{command}\n{self.what}\n".encode())
            os.fsync(fd)
            self.fd = fd
            return
        raise FerbenchError(f"could not take the lock {self.path}; another process keeps replacing it")

    def check_free(self) -> None:
        """Refuse now, naming the holder, when a live writer holds the lock; take nothing (a stale lock is only
        probed). For a command that shows a plan before it takes the lock: the refusal comes first."""
        fd = self._take_over()
        if fd is not None:
            os.close(fd)  # closing drops the probe's flock; the stale lock file stays for acquire() to take over

    def __enter__(self) -> "WriteLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None

