"""The model repository's files as one package, and their plain names as aliases of it.

`configuration_mixingbuddy.py`, `vocabulary_mixingbuddy.py`, `processing_mixingbuddy.py` and `modeling_mixingbuddy.py`
sit at the top of the repository (and of every saved model folder) and import each other relatively, as Hub remote
code does. Relative imports need a package: this one is it, its path being the folder that holds the files. A finder
then makes `import modeling_mixingbuddy` return `mixingbuddy.hub.modeling_mixingbuddy`, so one copy of each class
exists whichever name imported it. The installed `mixingbuddy-hub.pth` imports this module when Python starts.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from pathlib import Path

HUB_FILES = ("configuration_mixingbuddy", "vocabulary_mixingbuddy", "processing_mixingbuddy", "modeling_mixingbuddy")

# In a checkout the files sit beside the `mixingbuddy` folder; an installed wheel puts them beside it in site-packages.
__path__ = [str(Path(__file__).resolve().parents[2])]


class _AliasLoader(importlib.abc.Loader):
    """Loads a plain Hub-file name as the module of the same file inside this package."""

    def create_module(self, spec):
        return importlib.import_module(f"{__name__}.{spec.name}")

    def exec_module(self, module):
        pass  # executed once, under its package name


class HubFileAliases(importlib.abc.MetaPathFinder):
    """`import processing_mixingbuddy` → `mixingbuddy.hub.processing_mixingbuddy`."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in HUB_FILES:
            return importlib.util.spec_from_loader(fullname, _AliasLoader())
        return None


if not any(isinstance(finder, HubFileAliases) for finder in sys.meta_path):
    sys.meta_path.insert(0, HubFileAliases())
