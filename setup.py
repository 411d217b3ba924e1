"""Only what setup.cfg cannot say: the wheel carries the page (ui/) as dim_actors/uibridge/static.

ui/ stays at the top of the repository (a checkout serves it from there); building a wheel copies
it into the package, so `pip install .` gives a dim-desktop that serves its UI from site-packages.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent


class BuildPyWithUI(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install serves ui/ from the checkout
        target = Path(self.build_lib) / "dim_actors" / "uibridge" / "static"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(ROOT / "ui", target, ignore=shutil.ignore_patterns(".*", "*~", "__pycache__"))


setup(cmdclass={"build_py": BuildPyWithUI})
