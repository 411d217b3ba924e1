"""list_folders' confinement (dim_actors/router/folders.py), by tables, on a real folder tree:
what it lists, and what it refuses with which code."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dim_actors.desktop.folderdialog import choose_folder, start_folder
from dim_actors.router.folders import FolderError, list_folders, roots_for


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """home/{projects/{a,b}, .hidden, notes.txt, out -> outside, in -> projects/a},
    outside/secret, sync/s1 (a sync_root apart from home)."""
    home = tmp_path / "home"
    (home / "projects" / "a").mkdir(parents=True)
    (home / "projects" / "b").mkdir()
    (home / "Zeta").mkdir()
    (home / ".hidden").mkdir()
    (home / "notes.txt").write_text("a file, not a folder")
    outside = tmp_path / "outside"
    (outside / "secret").mkdir(parents=True)
    os.symlink(outside, home / "out")
    os.symlink(home / "projects" / "a", home / "in")
    sync = tmp_path / "sync"
    (sync / "s1").mkdir(parents=True)
    return {"home": home, "outside": outside, "sync": sync, "tmp": tmp_path}


def names(listing: dict) -> list[str]:
    return [f["name"] for f in listing["folders"]]


LISTED = {
    # path (relative to tmp, "" the default), show hidden -> the sub-folders listed
    "no path: the home folder, links leading out left out": (
        "",
        False,
        ["in", "projects", "Zeta"],
    ),
    "hidden folders only when asked": ("", True, [".hidden", "in", "projects", "Zeta"]),
    "a folder below home": ("home/projects", False, ["a", "b"]),
    "an empty folder": ("home/projects/a", False, []),
    "a trailing slash": ("home/projects/", False, ["a", "b"]),
    "a link inside home that stays inside": ("home/in", False, []),
    "the sync_root folder apart from home": ("sync", False, ["s1"]),
}


@pytest.mark.parametrize(("rel", "hidden", "expected"), LISTED.values(), ids=LISTED)
def test_what_list_folders_lists(tree, rel, hidden, expected):
    roots = roots_for(str(tree["home"]), str(tree["sync"]))
    path = str(tree["tmp"] / rel) + ("/" if rel.endswith("/") else "") if rel else None
    listing = list_folders(path, roots, hidden)
    assert names(listing) == expected
    for f in listing["folders"]:
        assert Path(f["path"]).parent == Path(listing["path"])


REFUSED = {
    # path (with {tmp} and {home}) -> the error code
    "a relative path": ("projects", "INVALID_ARGUMENTS"),
    "a '..' inside home": ("{home}/projects/../projects", "INVALID_ARGUMENTS"),
    "a '..' leading out": ("{home}/..", "INVALID_ARGUMENTS"),
    "an absolute path outside": ("{tmp}/outside", "FORBIDDEN"),
    "the root of the disk": ("/", "FORBIDDEN"),
    "a link inside home leading out": ("{home}/out", "FORBIDDEN"),
    "a folder below a link leading out": ("{home}/out/secret", "FORBIDDEN"),
    "a file, not a folder": ("{home}/notes.txt", "INVALID_ARGUMENTS"),
    "a folder that does not exist": ("{home}/nope", "NOT_FOUND"),
}


@pytest.mark.parametrize(("raw", "code"), REFUSED.values(), ids=REFUSED)
def test_what_list_folders_refuses(tree, raw, code):
    roots = roots_for(str(tree["home"]), str(tree["sync"]))
    with pytest.raises(FolderError) as e:
        list_folders(raw.format(tmp=tree["tmp"], home=tree["home"]), roots)
    assert e.value.code == code
    assert e.value.message.startswith("list_folders: ")


def test_the_parent_stops_at_a_root_and_the_roots_are_named(tree):
    roots = roots_for(str(tree["home"]), str(tree["sync"]))
    top = list_folders(None, roots)
    assert top["path"] == str(tree["home"].resolve())
    assert top["parent"] is None
    assert [r["label"] for r in top["roots"]] == ["Home", "Sync folder"]
    below = list_folders(str(tree["home"] / "projects"), roots)
    assert below["parent"] == str(tree["home"].resolve())
    # a sync_root inside home is no second root
    assert len(roots_for(str(tree["home"]), str(tree["home"] / "projects"))) == 1


# The native window's dialog: what the page's "Choose…" gets back from choose_folder (the dialog
# itself, a system window, cannot be clicked reliably under Xvfb: a function stands in for the
# user's choice, and records where the dialog was opened).
DIALOG = {
    "a folder picked": (["{home}/projects"], "{home}/projects"),
    "pywebview's tuple": (("{home}/projects/a",), "{home}/projects/a"),
    "a string": ("{home}/Zeta", "{home}/Zeta"),
    "cancelled": (None, None),
    "nothing picked": ([], None),
}


@pytest.mark.parametrize(("answer", "expected"), DIALOG.values(), ids=DIALOG)
def test_the_native_dialog_answer_reaches_the_page_as_one_path(tree, answer, expected):
    fill = lambda x: x.format(home=tree["home"]) if isinstance(x, str) else x  # noqa: E731
    opened_at: list[str] = []

    def dialog(start: str):
        opened_at.append(start)
        if isinstance(answer, (list, tuple)):
            return type(answer)(fill(a) for a in answer)
        return fill(answer)

    assert choose_folder(dialog, str(tree["home"] / "projects")) == fill(expected)
    assert opened_at == [str(tree["home"] / "projects")]


def test_the_native_dialog_opens_at_the_nearest_existing_folder(tree):
    home = os.path.expanduser("~")
    assert start_folder(str(tree["home"] / "projects" / "new" / "deeper")) == str(
        tree["home"] / "projects"
    )
    assert start_folder("") == home
    assert start_folder(None) == home
    assert start_folder("relative/path") == home
