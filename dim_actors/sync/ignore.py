"""Which local paths are never synced: editor noise, .git, our own files, and .gitignore rules."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from dim_actors.sync.paths import is_git_name

# Editors write these around a save; syncing them would be noise at best, a loop at worst.
_NOISE = re.compile(
    r"""(
        \.(?:.*\.)?sw(?:[a-p]x?|x)          # vim swap files: always dot-prefixed (.x.swp, .x.swo, ...,
                                           # .x.swpx, .x.swx probes; .swp for a buffer with no name)
      | .*~                                # ~ backups (vim writebackup, emacs)
      | \.\#.* | \#.*\#                    # emacs lock files, autosaves
      | .*___jb_(tmp|old)___               # JetBrains safe-write
      | sed(?=[a-z]{0,5}[A-Z0-9])[A-Za-z0-9]{6}
                                           # sed -i's mkstemp file: six of [A-Za-z0-9], so at least one
                                           # capital or digit tells it from a word (sedentary); one in
                                           # (26/62)^6 ~ 0.5% is all lowercase and is not caught by name
      | \.goutputstream-.*                 # GLib's atomic save
      | \.DS_Store
      | \.dim-.*\.tmp                      # the materializer's own temp files
      | .*\.upstream-\d+(\..*)?            # conflict copies written beside a file
    )""",
    re.X,
)


def is_vim_probe(name: str) -> bool:
    """vim checks it may write a folder by creating '4913' (then 5036, 5159, ... if taken)."""
    if not name.isdigit() or len(name) > 6:
        return False
    n = int(name)
    return 4913 <= n < 4913 + 123 * 100 and (n - 4913) % 123 == 0


def is_noise(rel: str) -> bool:
    """True for editor noise, .git and our own files, by name only (no .gitignore)."""
    p = PurePosixPath(rel)
    if any(is_git_name(part) for part in p.parts):
        return True  # .git however a case-insensitive disk spells it
    name = p.name
    return bool(_NOISE.fullmatch(name)) or is_vim_probe(name)


def conflict_copy_name(rel: str, iteration: int) -> str:
    """src/app.py -> src/app.upstream-7.py; Makefile -> Makefile.upstream-7; .bashrc -> .bashrc.upstream-7"""
    p = PurePosixPath(rel)
    stem, dot, ext = p.name.rpartition(".")
    if not stem or not dot:  # no extension, or a dotfile such as .bashrc
        name = f"{p.name}.upstream-{iteration}"
    else:
        name = f"{stem}.upstream-{iteration}.{ext}"
    return str(p.with_name(name))


# --- .gitignore ----------------------------------------------------------------------------------------


def _translate(pattern: str) -> str:
    """A gitignore glob as a regex over '/'-separated paths."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                if i + 2 < n and pattern[i + 2] == "/":
                    out.append("(?:.*/)?")
                    i += 3
                else:
                    out.append(".*")
                    i += 2
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            j = pattern.find(
                "]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^", "]") else i + 1
            )
            if j == -1:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


class Rule:
    __slots__ = ("regex", "negate", "dir_only", "basename")

    def __init__(self, line: str):
        self.negate = line.startswith("!")
        if self.negate:
            line = line[1:]
        self.dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        self.basename = not anchored
        self.regex = re.compile(
            _translate(line) + r"(?:/.*)?" if line.endswith("/**") else _translate(line)
        )

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        subject = rel.rsplit("/", 1)[-1] if self.basename else rel
        return self.regex.fullmatch(subject) is not None


def parse_gitignore(text: str) -> list[Rule]:
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("\\#") or line.startswith("\\!"):
            line = line[1:]
        stripped = line.rstrip(" ")
        if stripped.endswith("\\") and len(stripped) < len(line):
            stripped += " "  # an escaped trailing space stays
        if stripped:
            try:
                rules.append(Rule(stripped))
            except re.error:
                continue
    return rules


class GitIgnore:
    """The .gitignore files of a folder tree (the root's and every subfolder's), re-read when they
    change, and `extra` patterns (the sync_extra_ignore setting). The extra patterns are read the
    way git reads .git/info/exclude: relative to the root, and below every .gitignore in precedence
    (a .gitignore's `!pattern` can re-include what they exclude)."""

    def __init__(self, root: Path, extra: list[str] | tuple[str, ...] = ()):
        self.root = Path(root)
        self.extra = parse_gitignore("\n".join(extra))
        self._cache: dict[str, tuple[tuple[int, int, int], list[Rule]]] = {}

    def _rules(self, directory: str) -> list[Rule]:
        path = (
            self.root / directory / ".gitignore"
            if directory
            else self.root / ".gitignore"
        )
        try:
            st = os.stat(path)
        except OSError:
            self._cache.pop(directory, None)
            return self.extra if not directory else []
        # size and inode as well as mtime: an editor's save within the same mtime tick still counts
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache.get(directory)
        if cached is None or cached[0] != key:
            try:
                rules = parse_gitignore(path.read_text(errors="replace"))
            except OSError:
                rules = []
            cached = self._cache[directory] = (
                key,
                self.extra + rules if not directory else rules,
            )
        return cached[1]

    def _match(self, parts: list[str], is_dir: bool) -> bool:
        ignored = False
        for depth in range(
            len(parts)
        ):  # .gitignore files from the root down; the deepest, last rule wins
            rules = self._rules("/".join(parts[:depth]))
            if not rules:
                continue
            rel = "/".join(parts[depth:])
            for rule in rules:
                if rule.matches(rel, is_dir):
                    ignored = not rule.negate
        return ignored

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        parts = [p for p in rel.split("/") if p]
        for i in range(1, len(parts) + 1):
            # a folder that is ignored hides everything below it (git does not look inside)
            if self._match(parts[:i], is_dir=i < len(parts) or is_dir):
                return True
        return False


def is_ignored(
    rel: str, gitignore: GitIgnore | None = None, is_dir: bool = False
) -> bool:
    return is_noise(rel) or (gitignore is not None and gitignore.ignored(rel, is_dir))
