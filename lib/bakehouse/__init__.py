"""bakehouse: bake machine images with Packer as a make-style doit task graph.

Bakes are declared in bakes/*.toml, rendered from Jinja2 templates in templates/, and kept
up to date by content: see README.md and the modules' docstrings.
"""

__version__ = "0.1.0"
