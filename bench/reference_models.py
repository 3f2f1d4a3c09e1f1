"""The model code as it was at an earlier commit, importable beside today's, so that a benchmark
or a test can compare the two in one process: same machine, same moment, same inputs."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
# The last commit before the families answered for themselves (hook points, plain nn.Linear).
BEFORE_REDESIGN = "7a2c15f"


def git(*arguments: str) -> str:
    return subprocess.run(["git", *arguments], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def models_at(revision: str = BEFORE_REDESIGN) -> ModuleType | None:
    """``babygpt/models`` as it was at ``revision``, imported as a package of its own (its imports
    are all relative); None where git or that revision is missing (an unpacked archive, a
    shallow clone)."""
    try:
        names = git("ls-tree", "--name-only", f"{revision}:babygpt/models").split()
    except (OSError, subprocess.CalledProcessError):
        return None
    package = f"babygpt_models_{revision}"
    if package in sys.modules:
        return sys.modules[package]
    folder = Path(tempfile.mkdtemp(prefix="babygpt-models-")) / package
    folder.mkdir()
    for name in names:
        if name.endswith(".py"):
            (folder / name).write_text(git("show", f"{revision}:babygpt/models/{name}"))
    spec = importlib.util.spec_from_file_location(package, folder / "__init__.py",
                                                  submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[package] = module
    spec.loader.exec_module(module)
    return module
