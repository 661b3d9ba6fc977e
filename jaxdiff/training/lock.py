r"""One training process per workdir: ``workdir/.lock`` held with ``fcntl.flock`` for the life of the job.

The kernel drops an ``flock`` when its holder exits, however it exits (SIGKILL, a crash, a lost machine's
local processes), so a lock file left by a dead run is free: the next run takes it over and says whose it
was. A live holder is named (pid, host, start time) in the refusal. The file is advisory and local: on file
systems without ``flock`` (some network mounts) the lock cannot be taken and the run says so and refuses,
rather than risk two writers. A multi-process job holds one lock, taken by process 0.
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
from typing import Callable

LOCK_NAME = ".lock"


class WorkdirLockedError(RuntimeError):
    """Another live process holds the workdir's lock (the message names its pid and host)."""


class WorkdirLock:
    """``with WorkdirLock(workdir, log=print): ...`` — exclusive, non-blocking; raises :class:`WorkdirLockedError`."""

    def __init__(self, workdir: str, *, log: Callable[[str], None] | None = None):
        self.path = os.path.join(os.path.abspath(workdir), LOCK_NAME)
        self.log = log or (lambda msg: None)
        self._fd: int | None = None

    def _holder(self) -> dict:
        try:
            with open(self.path) as fh:
                return json.loads(fh.read() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> WorkdirLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            holder = self._holder()
            if err.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise WorkdirLockedError(
                    f"workdir {os.path.dirname(self.path)!r} is in use by another training process (pid "
                    f"{holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}); "
                    f"wait for it to finish or stop it, or use another --workdir. (Lock file: {self.path})"
                ) from None
            raise WorkdirLockedError(f"cannot lock {self.path} ({os.strerror(err.errno)}): this file system may not "
                                     "support flock; use a local --workdir.") from None
        previous = self._holder()
        if previous.get("pid") is not None:
            self.log(f"note: took over the lock of a run that is no longer running (pid {previous.get('pid')} on "
                     f"host {previous.get('host', '?')}, started {previous.get('started', '?')})")
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Clear the record and drop the lock (the file stays: removing it could race a waiting process)."""
        if self._fd is None:
            return
        try:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WorkdirLock:
        return self.acquire()

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


__all__ = ["LOCK_NAME", "WorkdirLock", "WorkdirLockedError"]
