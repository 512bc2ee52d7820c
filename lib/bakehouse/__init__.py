"""bakehouse: bake machine images with Packer as a make-style doit task graph.

Bakes are declared in bakes/*.toml, rendered from Jinja2 templates (built in, or a
repository's own under templates/), and kept up to date by content: see README.md, docs/ and
the modules' docstrings.
"""

# The package's version (pyproject.toml reads it here). Images record the version that baked
# them, so a rebake caused by a changed built-in template says which upgrade changed it.
__version__ = "0.2.0"
