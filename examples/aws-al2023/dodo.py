"""The bake graph of this repository: `doit bake:<name>`, `doit info bake:<name>`, `doit plan`,
`doit` (bakes in bakes/, packages in packages/, own templates in templates/; see bakehouse's docs)."""

from pathlib import Path

from bakehouse.tasks import dodo_globals

globals().update(dodo_globals(Path(__file__).parent))
