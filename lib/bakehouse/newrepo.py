"""A new bakehouse repository, made from the starter bakehouse ships (`doit init`).

The starter is the example this project bakes itself: bakes/ with a local Debian base and a
service on it (or, for AWS, the AMI example), packages/ with the hello-svc package (not the
project's RPM example: a new repository needs no rpmbuild), a thin
dodo.py, doit.cfg naming bakehouse's loader, bakehouse.toml with its defaults commented out,
and .gitignore for bakehouse's state. No templates are written: the built-in ones are used
until the repository has a file of its own by the same name under templates/.

Nothing is ever overwritten: if any file the starter holds exists already, nothing is written.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import StarterError

STARTER = Path(__file__).parent / "starter"
KINDS = ("local", "aws")
# Files every repository gets, by their name in the starter and in the repository.
COMMON = (("dodo.py", "dodo.py"), ("doit.cfg", "doit.cfg"), ("bakehouse.toml", "bakehouse.toml"),
          ("gitignore", ".gitignore"))


def starter_files(kind: str) -> list[tuple[str, Path]]:
    """Each file a new repository of `kind` gets: its path in the repository, and where it
    comes from."""
    if kind not in KINDS:
        raise StarterError(f"no starter '{kind}'; there are {', '.join(KINDS)}")
    files = [(name, STARTER / "common" / source) for source, name in COMMON]
    root = STARTER / kind
    for folder in ("bakes", "packages"):
        # os.walk, not rglob: the starter's folders are links into this project (in a checkout)
        found = [Path(top) / name for top, _, names in os.walk(root / folder, followlinks=True) for name in names]
        files += [(str(path.relative_to(root)), path) for path in sorted(found)
                  if path.is_file() and "__pycache__" not in path.parts]
    return files


def make_repository(target: Path, kind: str = "local") -> list[str]:
    """Write the starter of `kind` into `target` (made if missing); the paths written, in order."""
    files = starter_files(kind)
    if target.exists() and not target.is_dir():
        raise StarterError(f"{target} is a file, not a folder")
    there = [name for name, _ in files if (target / name).exists() or (target / name).is_symlink()]
    if there:
        more = f" and {len(there) - 3} more" if len(there) > 3 else ""
        raise StarterError(f"{target}: {', '.join(there[:3])}{more} already there; doit init overwrites "
                           "nothing (run it in an empty folder, or move those aside)")
    for name, source in files:
        path = target / name
        path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, path)  # modes too: the package's maintainer script stays executable
    return [name for name, _ in files]
