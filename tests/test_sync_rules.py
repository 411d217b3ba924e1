"""The sync rules that need no process: what is noise, .gitignore matching, path
confinement, echoes."""

from __future__ import annotations

import pytest

from dim_actors.sync.defaults import default_folder, folder_name
from dim_actors.sync.echoes import EchoSet
from dim_actors.sync.ignore import GitIgnore, conflict_copy_name, is_noise
from dim_actors.sync.paths import UnsafePath, confined


@pytest.mark.parametrize(
    "rel",
    [
        ".app.py.swp",
        "src/.app.py.swo",
        ".x.swx",
        "app.py~",
        "4913",
        "src/5036",
        ".#app.py",
        "#app.py#",
        "app.py___jb_tmp___",
        "app.py___jb_old___",
        "sedAb12Cd",
        ".goutputstream-XYZ12",
        ".DS_Store",
        ".git/index",
        "sub/.git/HEAD",
        ".dim-0a1b2c.tmp",
        "app.upstream-3.py",
        "Makefile.upstream-12",
        # vim: a buffer with no name, a dotfile's swap, the later swap names, the 8.3
        # probe
        ".swp",
        "..bashrc.swp",
        ".app.py.swn",
        ".app.py.swa",
        ".app.py.swpx",
        # sed's mkstemp names: a capital or a digit among the six
        "sed1abcde",
        "sedabcdeF",
        "sedQWERTY",
        "sed000000",
    ],
)
def test_editor_noise_is_never_synced(rel):
    assert is_noise(rel)


@pytest.mark.parametrize(
    "rel",
    [
        "app.py",
        "4914",
        "sed.txt",
        "notes.md",
        ".gitignore",
        "src/upstream.py",
        "a.upstream-x.py",
        "sedan",
        "12345",
        # not vim's: swap files are always dot-prefixed
        "movie.swf",
        "x.swa",
        "notes.swp",
        "src/x.swo",
        ".swq",
        # words: six lowercase letters after "sed" (an all-lowercase mkstemp
        # name, about one in 185, is missed too: docs/sync.md §4)
        "sedentary",
        "sedatives",
        "src/sedimenta",
    ],
)
def test_ordinary_files_are_not_noise(rel):
    assert not is_noise(rel)


def test_conflict_copy_names():
    assert conflict_copy_name("src/app.py", 7) == "src/app.upstream-7.py"
    assert conflict_copy_name("Makefile", 2) == "Makefile.upstream-2"
    assert conflict_copy_name(".bashrc", 3) == ".bashrc.upstream-3"
    assert conflict_copy_name("a.tar.gz", 4) == "a.tar.upstream-4.gz"
    assert all(
        is_noise(conflict_copy_name(p, 5))
        for p in ("src/app.py", "Makefile", ".bashrc")
    )


def test_gitignore_rules(tmp_path):
    (tmp_path / ".gitignore").write_text(
        "# comment\n*.log\n!keep.log\nbuild/\n/only-root.txt\ndocs/**/*.tmp\n**/cache\n"
        "node_modules\n\\#hash\n"
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/.gitignore").write_text("local.txt\n!*.log\n")
    g = GitIgnore(tmp_path)
    assert g.ignored("a.log") and g.ignored("x/y/a.log") and not g.ignored("keep.log")
    assert (
        g.ignored("build/out.o")
        and g.ignored("x/build/out.o")
        and not g.ignored("build")
    )  # dir-only rule
    assert g.ignored("build", is_dir=True)
    assert g.ignored("only-root.txt") and not g.ignored("x/only-root.txt")
    assert (
        g.ignored("docs/a/b/c.tmp")
        and g.ignored("docs/c.tmp")
        and not g.ignored("src/c.tmp")
    )
    assert g.ignored("a/b/cache/x") and g.ignored("cache/y")
    assert g.ignored("node_modules/pkg/index.js") and g.ignored("#hash")
    assert g.ignored("sub/local.txt") and not g.ignored("local.txt")
    assert not g.ignored("sub/debug.log")  # the deeper file re-includes it
    assert not g.ignored("src/app.py")
    (tmp_path / ".gitignore").write_text("*.py\n")  # re-read when it changes
    import os

    os.utime(tmp_path / ".gitignore", ns=(1, 1))
    assert g.ignored("src/app.py") and not g.ignored("a.log")


def test_extra_ignore_patterns_are_read_like_a_root_gitignore_below_it_in_precedence(
    tmp_path,
):
    (tmp_path / ".gitignore").write_text("!keep.log\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/.gitignore").write_text("!secret/\n")
    g = GitIgnore(tmp_path, ["*.log", "secret/", "/top-only.txt"])
    assert (
        g.ignored("debug.log")
        and g.ignored("a/b/debug.log")
        and g.ignored("secret/key", is_dir=False)
    )
    # anchored at the root
    assert g.ignored("top-only.txt") and not g.ignored("a/top-only.txt")
    # the folder's .gitignore re-includes it: it comes later
    assert not g.ignored("keep.log")
    assert not g.ignored("sub/secret/key")  # so does a deeper one
    assert not g.ignored("src/app.py") and not GitIgnore(tmp_path).ignored("debug.log")


# (.gitignore files by folder, sync_extra_ignore, path, ignored?), each as `git status`
# has it
GIT_SEMANTICS = [
    # where our own matcher differed from git
    ({"": "a/**b\n"}, [], "a/x/yb", False),  # "**" not between slashes is a plain "*"
    ({"": "a/**b\n"}, [], "a/yb", True),
    ({"": "\\!imp\n"}, [], "!imp", True),  # an escaped "!" is a literal, not a negation
    ({"": "a[/]b\n"}, [], "a/b", False),  # a bracket never matches "/"
    (
        {"": "foo\\\n*.log\n"},
        [],
        "foo\\",
        False,
    ),  # a trailing backslash: the line is void
    ({"": "foo\\\n*.log\n"}, [], "x.log", True),  # ... and only that line
    # git's idioms, kept
    ({"": "*\n!*/\n!*.py\n"}, [], "src/a.py", False),
    ({"": "*\n!*/\n!*.py\n"}, [], "src/a.c", True),
    ({"": "d/**\n!d/k\n"}, [], "d/k", False),  # d/** matches what is in d, not d
    ({"": "d/**\n!d/k\n"}, [], "d/x", True),
    ({"": "build/\n!build/keep.txt\n"}, [], "build/keep.txt", True),  # git skips build
    ({"": "/*\n!/foo\n/foo/*\n!/foo/bar\n"}, [], "foo/bar/y", False),
    ({"": "/*\n!/foo\n/foo/*\n!/foo/bar\n"}, [], "foo/x", True),
    ({"": "*.o\n!/lib/*.o\n"}, [], "lib/x/a.o", True),
    ({"": "*.o\n!/lib/*.o\n"}, [], "lib/a.o", False),
    ({"": "tmp\n!tmp/\n"}, [], "tmp/a", False),
    ({"": "**/logs/*.log\n"}, [], "x/logs/y/a.log", False),
    ({"": "a/*/b\n"}, [], "a/x/y/b", False),
    # across .gitignore files: a deeper one's "!folder/" re-includes the folder, not its
    # files
    ({"": "*.log\n", "sub": "!logs/\n"}, [], "sub/logs/a.log", True),
    (
        {"": "secret/\n", "sub": "!x\n"},
        [],
        "sub/secret/x",
        True,
    ),  # its folder is hidden
    ({"": "*\n!a/\n", "a": "!b\n"}, [], "a/b", False),
    ({"": "", "src": "*.py\n"}, ["!keep.py", "*.c"], "src/keep.py", True),
    ({"": "!x.c\n"}, ["*.c"], "x.c", False),
]


@pytest.mark.parametrize("files, extra, path, ignored", GIT_SEMANTICS)
def test_gitignore_follows_git(tmp_path, files, extra, path, ignored):
    for folder, text in files.items():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / folder / ".gitignore").write_text(text)
    assert GitIgnore(tmp_path, extra).ignored(path) is ignored


def test_default_folders_are_safe_names_under_sync_root(tmp_path):
    assert folder_name("fix: a/b\\c") == "fix- a-b-c"
    assert (
        folder_name("  ../../etc  ") == "etc"
        and folder_name("..") == ""
        and folder_name(".hidden") == "hidden"
    )
    assert (
        folder_name("a\x00b\nc") == "a-b-c"
        and len(folder_name("é" * 300).encode()) <= 120
    )
    root = str(tmp_path)
    assert (
        default_folder(root, "1234567890", "My project", set())
        == tmp_path / "My project"
    )
    assert default_folder(root, "1234567890", None, set()) == tmp_path / "1234567890"
    assert default_folder(root, "1234567890", "..", set()) == tmp_path / "1234567890"
    # sessions share names ("New session"): a folder already synced by another gets the
    # id added
    taken = {str(tmp_path / "New session")}
    assert (
        default_folder(root, "abcdef123456", "New session", taken)
        == tmp_path / "New session-abcdef12"
    )
    assert default_folder("~", "x", "n", set()).is_absolute()


def test_confined_refuses_what_leads_outside(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "in").mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    (root / "inner-link").symlink_to(root / "in", target_is_directory=True)
    (root / "file-link").symlink_to(outside / "x")
    assert confined(root, "a/b.txt") == root / "a/b.txt"
    assert confined(root, "./a//b.txt") == root / "a/b.txt"
    assert confined(root, "inner-link/x") == root / "inner-link/x"
    for bad in (
        "../x",
        "/etc/passwd",
        "a/../../x",
        "link/evil",
        "file-link",
        "",
        "a\\b",
        "a\x00b",
        ".git/config",
        "x/.git/hooks/pre-commit",
        "a/\nb",
    ):
        with pytest.raises(UnsafePath):
            confined(root, bad)


def test_echo_set_matches_exactly_our_own_write():
    echoes = EchoSet(ttl_s=5)
    echoes.add("/f/a", "h1")
    # a different state (a user's edit) is not ours
    assert not echoes.consume("/f/a", "h2")
    # once only
    assert echoes.consume("/f/a", "h1") and not echoes.consume("/f/a", "h1")
    echoes.add("/f/b", "h1")
    echoes.attach_sig("/f/b", "h1", (3, 10, 99))
    assert echoes.consume_sig("/f/b", (3, 11, 99)) is None
    assert echoes.consume_sig("/f/b", (3, 10, 99)) == "h1"
    echoes.add("/f/c", "h1")
    # the watcher saw another state first: the old write can no longer echo
    echoes.forget("/f/c")
    assert not echoes.consume("/f/c", "h1")
    short = EchoSet(ttl_s=0)
    short.add("/f/d", "h")
    assert not short.consume("/f/d", "h")  # expired


def test_echo_set_remembers_its_last_write_for_the_leak_counter():
    echoes = EchoSet(ttl_s=5)
    echoes.add("/f/a", "h1")
    assert echoes.consume("/f/a", "h1")
    # consumed, yet the same state seen again is still our write: reported, it would be
    # a leak
    assert echoes.wrote("/f/a", "h1") and not echoes.wrote("/f/a", "h2")
    # a user's state was seen: from now on h1 there is the user's too
    echoes.forget("/f/a")
    assert not echoes.wrote("/f/a", "h1")
    echoes.add("/f/b", "")  # a deletion
    echoes.discard("/f/b", "")  # that did not happen
    assert not echoes.wrote("/f/b", "")
    echoes.count("s1", "echoesSuppressed")
    echoes.count("s1", "echoesLeaked")
    # what the watcher tells the journal (EchoCounts): only sessions with any
    assert echoes.counted() == {"s1": (1, 1)} and echoes.leaked == 1
