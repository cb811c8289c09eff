"""Build step: write the man page pageowner.1 from the click commands and install it.

Everything else about the package is in pyproject.toml. The page goes to
share/man/man1 under the install prefix, so in a venv `man -M .venv/share/man pageowner`.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup
from setuptools.dist import Distribution

HERE = os.path.dirname(os.path.abspath(__file__))
MAN_PAGE = os.path.join("build", "man", "pageowner.1")

sys.path.insert(0, HERE)  # the package being built, not an installed one
from pageowner.cli.manpage import write_manpage  # noqa: E402

os.makedirs(os.path.join(HERE, "build", "man"), exist_ok=True)
write_manpage(os.path.join(HERE, MAN_PAGE))

class _Distribution(Distribution):
    """A distribution whose data files an editable install (`pip install -e`) installs too.

    setuptools' editable_wheel installs data only if the distribution has `has_data()`
    (it asks for `has_{category}`), which distutils names `has_data_files()` (setuptools
    84): without this, `make`'s editable venv would have no man page.
    """

    def has_data(self) -> bool:
        return self.has_data_files()


setup(data_files=[("share/man/man1", [MAN_PAGE])], distclass=_Distribution)
