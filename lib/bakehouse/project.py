"""Where things live in a bakehouse repository."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# The templates and scripts bakehouse ships, part of the installed package.
BUILT_IN_TEMPLATES = Path(__file__).parent / "templates"


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
    def template_dirs(self) -> tuple[Path, ...]:
        """Where a template or script is looked up by name: the repository's own templates/
        first (its file overrides the built-in one of that name), then the built-in ones."""
        return (self.templates_dir, BUILT_IN_TEMPLATES)

    def template_file(self, name: str) -> Path | None:
        """The file a template name means (the repository's own, else the built-in one), or
        None when neither has it or the name leads outside them."""
        for directory in self.template_dirs:
            path = (directory / name).resolve()
            if path.is_relative_to(directory.resolve()) and path.is_file():
                return path
        return None

    def built_in(self, name: str) -> bool:
        """`name` means a built-in template or script (the repository has no file of its own by that name)."""
        path = self.template_file(name)
        return path is not None and path.is_relative_to(BUILT_IN_TEMPLATES.resolve())

    def template_names(self) -> list[str]:
        """Every template and script name, own and built-in, once."""
        names = {str(path.relative_to(directory)) for directory in self.template_dirs if directory.is_dir()
                 for path in directory.rglob("*") if path.is_file() and "__pycache__" not in path.parts}
        return sorted(names)

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
