"""The bake graph of this repository (see README.md): `doit bake:<name>`, `doit info`, `doit`."""

from pathlib import Path

from bakehouse.tasks import dodo_globals

globals().update(dodo_globals(Path(__file__).parent))
