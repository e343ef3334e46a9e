"""Build the API reference from the docstrings with pdoc: ``python docs/make_api.py [OUT_DIR]``.

Writes HTML pages (default ``docs/api/``, git-ignored), one per public module of ``saga_sim``:
pdoc by itself renders only the submodules a package lists in ``__all__``, and ``saga_sim``'s
``__all__`` lists names, not modules, so the modules are named here. Private modules (a name
starting with ``_``) are left out. ``tests/test_packaging.py`` builds it on every CI run.
"""

from __future__ import annotations

import pkgutil
import sys
from pathlib import Path

import pdoc

import saga_sim


def public_modules() -> list[str]:
    """``saga_sim`` and every submodule whose dotted name has no part starting with ``_``."""
    found = [
        m.name
        for m in pkgutil.walk_packages(saga_sim.__path__, "saga_sim.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]
    return ["saga_sim", *sorted(found)]


def main(out: Path) -> None:
    """Write the reference under ``out``."""
    pdoc.pdoc(*public_modules(), output_directory=out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent / "api")
