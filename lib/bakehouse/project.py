"""Where things live in a bakehouse repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Project:
    """The repository layout: every path bakehouse reads or writes hangs off `root`."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> Project:
        return cls(Path(root).resolve())

    @property
    def bakes_dir(self) -> Path:
        return self.root / "bakes"

    @property
    def templates_dir(self) -> Path:
        return self.root / "templates"

    @property
    def packages_dir(self) -> Path:
        return self.root / "packages"

    @property
    def dist_dir(self) -> Path:
        return self.root / "dist"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def state_dir(self) -> Path:
        return self.root / ".bakehouse"

    @property
    def logs_dir(self) -> Path:
        return self.state_dir / "logs"

    def relative(self, path: Path) -> str:
        """`path` as the user sees it: relative to the repository when inside it."""
        try:
            return str(path.resolve().relative_to(self.root))
        except ValueError:
            return str(path)
