"""Which local paths are never synced: editor noise, .git, our own files, and .gitignore
rules."""

from __future__ import annotations

import os
import re
from pathlib import Path, PurePosixPath

from pathspec import GitIgnoreSpec, PathSpec
from pathspec.patterns.gitignore.spec import GitIgnoreSpecPattern

from dim_actors.sync.paths import is_git_name

# Editors write these around a save; syncing them would be noise at best, a loop at
# worst.
_NOISE = re.compile(
    r"""(
        \.(?:.*\.)?sw(?:[a-p]x?|x)          # vim swap files: always dot-prefixed
                                           # (.x.swp, .x.swo, ..., .x.swpx, .x.swx
                                           # probes; .swp for a buffer with no name)
      | .*~                                # ~ backups (vim writebackup, emacs)
      | \.\#.* | \#.*\#                    # emacs lock files, autosaves
      | .*___jb_(tmp|old)___               # JetBrains safe-write
      | sed(?=[a-z]{0,5}[A-Z0-9])[A-Za-z0-9]{6}
                                           # sed -i's mkstemp file: six of [A-Za-z0-9],
                                           # so at least one capital or digit tells it
                                           # from a word (sedentary); one in (26/62)^6
                                           # ~ 0.5% is all lowercase and is not caught
                                           # by name
      | \.goutputstream-.*                 # GLib's atomic save
      | \.DS_Store
      | \.dim-.*\.tmp                      # the materializer's own temp files
      | .*\.upstream-\d+(\..*)?            # conflict copies written beside a file
    )""",
    re.X,
)


def is_vim_probe(name: str) -> bool:
    """vim checks it may write a folder by creating '4913' (then 5036, 5159, ... if
    taken)."""
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
    """src/app.py -> src/app.upstream-7.py; Makefile -> Makefile.upstream-7; .bashrc ->
    .bashrc.upstream-7"""
    p = PurePosixPath(rel)
    stem, dot, ext = p.name.rpartition(".")
    if not stem or not dot:  # no extension, or a dotfile such as .bashrc
        name = f"{p.name}.upstream-{iteration}"
    else:
        name = f"{stem}.upstream-{iteration}.{ext}"
    return str(p.with_name(name))


# --- .gitignore -----------------------------------------------------------------------


def _patterns(lines: list[str]) -> list[GitIgnoreSpecPattern]:
    """git skips a line it cannot read (a trailing backslash, say) and keeps the others,
    where pathspec would refuse the whole file."""
    patterns = []
    for line in lines:
        try:
            patterns.append(GitIgnoreSpecPattern(line))
        except (ValueError, re.error):
            continue
    return [p for p in patterns if p.include is not None]  # comments and blank lines


class _IndexedSpec:
    """Some of a file's patterns, last match wins; answers with the pattern's index in
    the file."""

    def __init__(self, patterns: list[GitIgnoreSpecPattern], picked: list[int]):
        self.spec = PathSpec([patterns[i] for i in picked], backend="simple")
        self.picked = picked

    def check(self, path: str) -> tuple[bool | None, int]:
        result = self.spec.check_file(path)
        if result.index is None:
            return None, -1
        return result.include, self.picked[result.index]


class _Rules:
    """One .gitignore's patterns. A file is matched by pathspec's GitIgnoreSpec. A
    folder is matched by the last pattern that names it, as git does: GitIgnoreSpec
    ranks `*` above a later `!*/` for a folder, and has `d/**` match d itself, hiding
    what a later `!d/keep` re-includes."""

    def __init__(self, lines: list[str]):
        patterns = _patterns(lines)
        self.count = len(patterns)
        self.files = GitIgnoreSpec(patterns, backend="simple")
        folder_only = [_folder_only(p) for p in patterns]
        # a folder is matched by name ("tmp", "*") and by folder patterns ("tmp/")
        # against "tmp/"
        self.by_name = _IndexedSpec(
            patterns, [i for i, f in enumerate(folder_only) if not f]
        )
        self.as_folder = _IndexedSpec(
            patterns, [i for i, f in enumerate(folder_only) if f]
        )

    def check(self, rel: str, is_dir: bool) -> tuple[bool | None, int]:
        """Whether the last pattern matching `rel` ignores it (None: no pattern
        matches), and that pattern's index (-1 for none)."""
        if not is_dir:
            result = self.files.check_file(rel)
            return result.include, -1 if result.index is None else result.index
        return max(
            self.by_name.check(rel), self.as_folder.check(rel + "/"), key=lambda r: r[1]
        )


def _folder_only(pattern: GitIgnoreSpecPattern) -> bool:
    return str(pattern.pattern).rstrip(" ").endswith("/")


class GitIgnore:
    """The .gitignore files of a folder tree (the root's and every subfolder's), re-read
    when they change, and `extra` patterns (the sync_extra_ignore setting). The extra
    patterns are read the way git reads .git/info/exclude: relative to the root, and
    below every .gitignore in precedence (a .gitignore's `!pattern` can re-include what
    they exclude).

    The walk is git's: a path is checked against every .gitignore from the root down to
    its folder (the deepest file's last matching pattern wins), and a folder that is
    ignored hides everything below it."""

    def __init__(self, root: Path, extra: list[str] | tuple[str, ...] = ()):
        self.root = Path(root)
        self.extra = list(extra)
        self._extra_rules = _Rules(self.extra)
        self._cache: dict[str, tuple[tuple[int, int, int], _Rules]] = {}

    def _rules(self, directory: str) -> _Rules | None:
        """The patterns that apply in `directory` ('' for the root), None when there are
        none."""
        path = (
            self.root / directory / ".gitignore"
            if directory
            else self.root / ".gitignore"
        )
        try:
            st = os.stat(path)
        except OSError:
            self._cache.pop(directory, None)
            return (
                self._extra_rules if not directory and self._extra_rules.count else None
            )
        # size and inode as well as mtime: an editor's save within the same mtime tick
        # still counts
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        cached = self._cache.get(directory)
        if cached is None or cached[0] != key:
            try:
                lines = path.read_text(errors="replace").splitlines()
            except OSError:
                lines = []
            if not directory:
                lines = [*self.extra, *lines]
            cached = self._cache[directory] = (key, _Rules(lines))
        return cached[1] if cached[1].count else None

    def ignored(self, rel: str, is_dir: bool = False) -> bool:
        parts = [p for p in rel.split("/") if p]
        # per .gitignore (by its folder's depth): the pattern that decided the parent
        # path
        parent_rule: dict[int, int] = {}
        # each folder's .gitignore, looked at once per call (a stat each)
        rules_at = [self._rules("/".join(parts[:depth])) for depth in range(len(parts))]
        for end in range(1, len(parts) + 1):
            as_dir = end < len(parts) or is_dir
            ignored = False
            for depth in range(end):  # from the root down: the deepest, last match wins
                rules = rules_at[depth]
                if rules is None:
                    continue
                include, index = rules.check("/".join(parts[depth:end]), as_dir)
                # pathspec also matches a path by a pattern that matched its folder; git
                # asks of a path only the patterns that match it: its folders were
                # decided above
                inherited = index >= 0 and index == parent_rule.get(depth)
                parent_rule[depth] = index
                if include is not None and not inherited:
                    ignored = include
            if ignored:
                # an ignored folder hides everything below it (git does not look inside)
                return True
        return False
