"""One exception root: everything bakehouse raises on purpose is a BakehouseError.

The command-line edge (doit actions, task loading, `doit plan`) turns these into one
line on stderr and a non-zero exit; anything else is a bug and keeps its traceback.
"""


class BakehouseError(Exception):
    """A problem the user can fix; its message is one self-contained line."""


class DefinitionError(BakehouseError):
    """A bake file (bakes/*.toml) is malformed or the bake graph is inconsistent."""


class PackageError(BakehouseError):
    """A package spec cannot be resolved to a name and version."""


class TemplateError(BakehouseError):
    """A Packer template cannot be found or rendered."""


class PackerError(BakehouseError):
    """Packer failed, was cancelled, or did not report the image it made."""


class RegistryError(BakehouseError):
    """The image registry cannot be read or written."""


class RecordedError(RegistryError):
    """The image was recorded (it counts from now on), but the registry does not show it yet."""


class ProviderError(BakehouseError):
    """A provider's service (a cloud API) cannot be reached, finds no credentials, or
    refuses a request; each provider raises its own kind (providers/<name>/)."""


class StarterError(BakehouseError):
    """`doit init` cannot make a repository where it was asked to."""
