"""DIM_HOME: where one instance keeps its config, data, logs and run state.

Two instances with different DIM_HOMEs never share a file, so tests and users can run
them side by side. A lock file held with the system's own file lock (flock, or
LockFileEx on Windows, through filelock) marks the running instance: the system drops
the lock when the process dies, so a crash never leaves a stale "already running"
behind.

Everything in DIM_HOME is private to its user (docs/security.md): the app runs with
umask 077, and at start `ensure` takes group and other access away from whatever already
lies there (an earlier version's files, a copy made by hand) and says which it changed.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import stat
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import filelock
import msgspec
import platformdirs

PRIVATE_UMASK = 0o077
_user_umask: int | None = None


def make_files_private() -> None:
    """From now on, everything this process and its children create is private to the
    user (umask 077). Called first thing at start, before any file, folder or child
    process exists."""
    global _user_umask
    previous = os.umask(PRIVATE_UMASK)
    if _user_umask is None:
        _user_umask = previous


def user_umask() -> int:
    """The umask the user started dim-desktop with: what files and folders made outside
    DIM_HOME, for the user (a sync folder and what is in it), should follow rather than
    the app's own."""
    if _user_umask is not None:
        return _user_umask
    current = os.umask(PRIVATE_UMASK)  # reading the umask means setting it
    os.umask(current)
    return current


class RuntimeInfo(msgspec.Struct):
    pid: int
    uiUrl: str
    token: str
    controlSocket: str
    gatewayUrl: str
    # The embedded dev gateway's per-launch token, for the owner's own tools (the file
    # is 0600); "" with a gateway of the user's, whose token stays where the user keeps
    # it.
    gatewayToken: str = ""


class AlreadyRunning(Exception):
    pass


class ModeFix(msgspec.Struct, frozen=True):
    """An entry of DIM_HOME that group or others had access to: its mode before and
    after (or why it could not be changed)."""

    path: str
    old: int
    new: int
    error: str | None = None

    def describe(self) -> str:
        change = f"{self.old:04o} -> {self.new:04o}"
        return f"{self.path} {change}" + (
            f" (failed: {self.error})" if self.error else ""
        )


def private_mode(mode: int) -> int | None:
    """The mode that makes a file or folder private to its owner, or None if it is
    already.

    Group and others lose every bit, read, write and execute alike (a folder others may
    only traverse still lets them open a file whose name they know); the owner keeps
    theirs, so an executable stays executable and a read-only file read-only."""
    perm = stat.S_IMODE(mode)
    new = perm & ~0o077
    return None if new == perm else new


def make_private(root: Path) -> list[ModeFix]:
    """Take group and other access away from `root` and everything under it. Symbolic
    links are neither changed (a link's own mode means nothing) nor followed (the target
    may be outside)."""
    fixes: list[ModeFix] = []

    def tighten(path: str, st: os.stat_result) -> None:
        new = private_mode(st.st_mode)
        if new is None:
            return
        try:
            os.chmod(path, new, follow_symlinks=False)
        except OSError as e:
            fixes.append(
                ModeFix(path, stat.S_IMODE(st.st_mode), new, e.strerror or str(e))
            )
        else:
            fixes.append(ModeFix(path, stat.S_IMODE(st.st_mode), new))

    tighten(str(root), root.lstat())
    folders = [str(root)]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as it:
                entries = list(it)
        except OSError:
            # removed meanwhile, or not ours to read: its own fix (or failure) is listed
            continue
        for entry in entries:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue  # removed meanwhile
            if stat.S_ISLNK(st.st_mode):
                continue
            tighten(entry.path, st)
            if stat.S_ISDIR(st.st_mode):
                folders.append(entry.path)
    return fixes


@dataclass(frozen=True)
class DimHome:
    root: Path

    @classmethod
    def from_env(cls) -> DimHome:
        root = os.environ.get("DIM_HOME") or platformdirs.user_data_dir(
            "dim-desktop", appauthor=False
        )
        return cls(Path(root).expanduser().resolve())

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def runtime_file(self) -> Path:
        return self.run_dir / "runtime.json"

    @property
    def control_socket(self) -> Path:
        return self.run_dir / "control.sock"

    @property
    def open_page(self) -> Path:
        return self.run_dir / "open.html"

    @property
    def ui_token_file(self) -> Path:
        return self.run_dir / "ui-token"

    @property
    def ui_port_file(self) -> Path:
        return self.run_dir / "ui-port"

    def ui_token(self) -> str:
        """The page's token: the one of the last run while it is valid (a private
        regular file of ours, well formed, younger than UI_TOKEN_MAX_AGE_S), so that a
        page left open across a restart of the app goes on working; else a new one,
        saved 0600. Deleting the file makes the next start choose a new one."""
        token = _read_private(self.ui_token_file, UI_TOKEN_MAX_AGE_S)
        if token is not None and _TOKEN_RE.fullmatch(token):
            return token
        token = secrets.token_urlsafe(32)
        write_private(self.ui_token_file, token + "\n")
        return token

    def last_ui_port(self) -> int:
        """The UI bridge's port in the last run (0: none known)."""
        text = _read_private(self.ui_port_file, None)
        try:
            port = int(text or "0")
        except ValueError:
            return 0
        return port if 1024 <= port <= 65535 else 0

    def remember_ui_port(self, port: int) -> None:
        write_private(self.ui_port_file, f"{port}\n")

    def ensure(self) -> list[ModeFix]:
        """Create the folders (0700), and make everything already in DIM_HOME private to
        its user. Returns what had to be changed, for the caller to log once logging is
        set up."""
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for d in (self.run_dir, self.data_dir, self.logs_dir, self.config_dir):
            d.mkdir(mode=0o700, exist_ok=True)
        own = [self.run_dir, self.data_dir, self.logs_dir, self.config_dir]
        # A DIM_HOME that is not the app's own folder: its other contents are not ours
        # to change.
        roots = own if self.is_shared_folder() else [self.root]
        fixes = [fix for root in roots for fix in make_private(root)]
        for d in (*roots, *own):
            # an owner-only mode the owner cannot use (0500)
            if stat.S_IMODE(d.stat().st_mode) != 0o700:
                os.chmod(d, 0o700)
        return fixes

    def is_shared_folder(self) -> bool:
        """DIM_HOME is the user's home folder, or a folder above it (a mistake, surely):
        then only the app's own subfolders are made private, not everything in it."""
        home = Path.home().resolve()
        return self.root == home or self.root in home.parents

    def acquire_instance_lock(self) -> filelock.BaseFileLock:
        """Hold the instance lock for the life of this process (keep what this returns:
        the lock goes with it); AlreadyRunning if another has it. Child processes do
        not inherit it: its file descriptor is not inheritable."""
        lock = filelock.FileLock(
            self.run_dir / "instance.lock",
            mode=0o600,
            # taken on the main thread, released by whichever thread ends the process
            thread_local=False,
            # a real lock of the system's or none: a soft lock (a marker file) could
            # outlive a crash
            preserve_lock_file=True,
        )
        try:
            lock.acquire(blocking=False)
        except filelock.Timeout:
            raise AlreadyRunning(self._running_description()) from None
        return lock

    def _running_description(self) -> str:
        info = self.read_runtime()
        if info is None:
            return f"dim-desktop is already running (or starting) with DIM_HOME={self.root}"
        return (
            f"dim-desktop is already running (pid {info.pid}, UI at {info.uiUrl}) with "
            f"DIM_HOME={self.root}"
        )

    def write_runtime(self, info: RuntimeInfo) -> None:
        tmp = self.runtime_file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(msgspec.json.format(msgspec.json.encode(info)))
        os.replace(tmp, self.runtime_file)

    def read_runtime(self) -> RuntimeInfo | None:
        try:
            return msgspec.json.decode(self.runtime_file.read_bytes(), type=RuntimeInfo)
        except (FileNotFoundError, msgspec.DecodeError, json.JSONDecodeError):
            return None

    def remove_runtime(self) -> None:
        self.runtime_file.unlink(missing_ok=True)
        self.open_page.unlink(missing_ok=True)

    def write_open_page(self, url: str) -> Path:
        """A page, readable only by this user, that forwards the browser to `url` (which
        carries the UI token): the browser is started on this file, so the token is on
        no command line, where every user could read it (`ps`). As Jupyter does."""
        # 0600, a name per call
        fd, tmp = tempfile.mkstemp(prefix=".open-", suffix=".tmp", dir=self.run_dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(open_page_html(url))
            os.replace(tmp, self.open_page)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.open_page


# The page's token is renewed at the first start after this long.
UI_TOKEN_MAX_AGE_S = 30 * 86400
_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{43}")


def _read_private(path: Path, max_age_s: float | None) -> str | None:
    """The first line of a regular file that is ours and that only we may read, or
    None (missing, a link, someone else's, readable by others, too old)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or stat.S_IMODE(st.st_mode) & 0o077
            or (max_age_s is not None and time.time() - st.st_mtime > max_age_s)
        ):
            return None
        text = f.read(4096).decode("ascii", errors="replace")
    lines = text.splitlines()
    return lines[0].strip() if lines else None


def write_private(path: Path, text: str) -> None:
    """Replace `path` atomically with a 0600 file holding `text` (UTF-8)."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)  # 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def open_page_html(url: str) -> str:
    """The page forwards at once, by script (location.replace: the file does not stay in
    the tab's history) or, with scripts off, by a meta refresh; the link is for a
    browser that does neither. The UI then keeps the token in the tab's session storage
    and takes it off the address bar."""
    attr = html.escape(url, quote=True)
    # no "</script>" can end the script early
    script = json.dumps(url).replace("<", "\\u003c")
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f'<meta http-equiv="refresh" content="0;url={attr}">\n'
        "<title>Diminuendo</title>\n"
        f"<script>location.replace({script});</script>\n"
        "</head><body>\n"
        f'<p>Opening Diminuendo… If nothing happens, <a href="{attr}">open it here</a>.</p>\n'
        "</body></html>\n"
    )
