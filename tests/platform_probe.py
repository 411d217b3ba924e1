"""Run as a program: import every module of `dim_actors` as another platform would,
and print what failed as JSON on stdout.

    python tests/platform_probe.py baseline
    python tests/platform_probe.py PLATFORM SPEC_JSON

`baseline` imports every module here, as it is, and prints the other modules that
pulled in, in the order they loaded. With a platform, the probe first loads those (so
the standard library and our dependencies take this machine's branches, as they take
their own platform's there), then forgets the modules SPEC_JSON's `missing` names and
makes them unimportable, takes away the attributes its `attrs` names (`os.geteuid`,
`signal.SIGKILL`: names the platform lacks), and only then imports our modules. It
prints `failed` (module -> error) and `leaks`: [importer, module] where a module not in
`specific` imports, at module level, one that is.
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.util
import json
import pkgutil
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def our_modules() -> list[str]:
    """Every module of the package, found on disk, none imported. `__main__` modules are
    programs: importing one runs it."""
    names: list[str] = []

    def walk(folder: Path, prefix: str) -> None:
        for info in pkgutil.iter_modules([str(folder)]):
            name = prefix + info.name
            if info.name == "__main__":
                continue
            names.append(name)
            if info.ispkg:
                walk(folder / info.name, name + ".")

    names.append("dim_actors")
    walk(ROOT / "dim_actors", "dim_actors.")
    return names


def baseline() -> None:
    for name in our_modules():
        importlib.import_module(name)
    print(json.dumps([m for m in sys.modules if not _ours(m)]))


def _ours(name: str) -> bool:
    return name == "dim_actors" or name.startswith("dim_actors.")


class Missing(importlib.abc.MetaPathFinder):
    def __init__(self, platform: str, missing: set[str]):
        self.platform = platform
        self.missing = missing

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in self.missing or fullname in self.missing:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (not on {self.platform})", name=fullname
            )
        return None


def _where(e: BaseException) -> str:
    """The last line of ours the error went through: the import to move or make lazy."""
    ours = [
        f"{Path(f.filename).relative_to(ROOT)}:{f.lineno}: "
        for f in traceback.extract_tb(e.__traceback__)
        if Path(f.filename).is_relative_to(ROOT / "dim_actors")
    ]
    return ours[-1] if ours else ""


def simulate(platform: str, spec: dict) -> None:
    preload: list[str] = spec["preload"]
    missing = set(spec["missing"])
    specific = set(spec["specific"])
    for name in preload:
        try:
            importlib.import_module(name)
        except Exception:
            pass  # a name that is not a module of its own (six.moves and the like)
    for name in list(sys.modules):
        if name.split(".")[0] in missing or name in missing:
            del sys.modules[name]
    for dotted in spec["attrs"]:
        module, attr = dotted.rsplit(".", 1)
        if hasattr(importlib.import_module(module), attr):
            delattr(sys.modules[module], attr)
    sys.meta_path.insert(0, Missing(platform, missing))

    leaks: set[tuple[str, str]] = set()
    real_import = builtins.__import__

    def watching_import(name, globals=None, locals=None, fromlist=(), level=0):
        importer = (globals or {}).get("__name__", "")
        if (
            _ours(importer)
            and importer not in specific
            and sys._getframe(1).f_code.co_name == "<module>"
        ):
            package = (globals or {}).get("__package__") or ""
            base = importlib.util.resolve_name("." * level + name, package)
            targets = {base, *(f"{base}.{f}" for f in fromlist or ())}
            leaks.update((importer, t) for t in targets & specific)
        return real_import(name, globals, locals, fromlist, level)

    builtins.__import__ = watching_import
    failed: dict[str, str] = {}
    for name in our_modules():
        try:
            importlib.import_module(name)
        except Exception as e:
            failed[name] = (
                _where(e) + "".join(traceback.format_exception_only(e)).strip()
            )
    builtins.__import__ = real_import
    print(json.dumps({"failed": failed, "leaks": sorted(leaks)}))


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    if sys.argv[1] == "baseline":
        baseline()
    else:
        simulate(sys.argv[1], json.loads(sys.argv[2]))
