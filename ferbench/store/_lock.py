"""`<output>.lock`: one writer per output file, across processes and hosts sharing a disk.

Created with O_CREAT|O_EXCL, holds "pid host", and is flock'ed while held, so a lock left by a dead writer
is recognised as stale without trusting the pid alone.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from pathlib import Path

from ferbench.errors import FerbenchError

try:
    import fcntl
except ImportError:  # not POSIX: the pid check alone decides whether a lock is stale
    fcntl = None  # type: ignore[assignment]


def _pid_alive(pid: int) -> bool:
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

    def __init__(self, path: Path, target: Path):
        self.path, self.target = path, target
        self.fd: int | None = None

    def _refuse(self, pid: str, host: str) -> FerbenchError:
        where = f"pid {pid}" if host in ("", socket.gethostname()) else f"pid {pid} on {host}"
        return FerbenchError(
            f"another ferbench prepare is writing {self.target} ({where}); wait for it to finish "
            f"(if no such process exists, delete {self.path})"
        )

    @staticmethod
    def _read(fd: int) -> tuple[str, str]:
        os.lseek(fd, 0, os.SEEK_SET)
        parts = os.read(fd, 4096).decode("utf-8", "replace").split()
        return (parts[0] if parts else ""), (parts[1] if len(parts) > 1 else "")

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
            pid, host = self._read(fd)
            if not pid and time.time() - st.st_mtime < 10:  # its creator has not written its pid yet
                raise self._refuse("?", "")
            if host and host != socket.gethostname():
                raise self._refuse(pid, host)
            if pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid))):
                raise self._refuse(pid, host)
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
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            os.fsync(fd)
            self.fd = fd
            return
        raise FerbenchError(f"could not take the lock {self.path}; another process keeps replacing it")

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.fstat(self.fd).st_ino == os.stat(self.path).st_ino:
                os.unlink(self.path)
        os.close(self.fd)
        self.fd = None

