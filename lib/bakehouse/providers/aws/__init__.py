"""The AWS provider: AMIs baked by packer's amazon-ebs in one region or many, with AWS itself
(AMI tags) as the registry.

    settings.py   its keys: regions, instance type, names, communicator, the [source] AMI
    client.py     the EC2 client (the only module that imports boto3), shared by the two below
    registry.py   AMIs as the registry: tags, one listing per region per run
    provider.py   the bake half: source AMIs, template values, reading packer's manifest

Only settings.py is imported to read bake files; boto3 is loaded when an AWS bake is decided.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from ...model import Bake, BakeGraph
from ...project import Project
from . import settings

if TYPE_CHECKING:
    from .provider import AwsProvider


class AwsDefinition:
    """The parse half (see providers/__init__.py)."""

    name = "aws"
    publish_targets = ("ssm", "launch_templates")  # what its bakes' [publish] may name (publish.py)
    keys = settings.KEYS
    key_docs = settings.KEY_DOCS
    source_keys = settings.SOURCE_KEYS
    source_key_docs = settings.SOURCE_KEY_DOCS
    project_tables = ("shared", "aws")  # bakehouse.toml: shared state on S3 (shared.py); aging defaults
    project_table_docs = (("shared", settings.SHARED_KEY_DOCS), ("aws", settings.AGING_KEY_DOCS))

    def parse_settings(self, where: str, data: dict[str, Any]) -> settings.AwsSettings:
        return settings.parse_settings(where, data)

    def parse_source(self, where: str, table: dict[str, Any]) -> settings.AwsSource:
        return settings.parse_source(where, table)

    def check_graph(self, bakes: Mapping[str, Bake]) -> None:
        settings.check_graph(bakes)

    def open(self, project: Project, graph: BakeGraph) -> AwsProvider:
        from .provider import AwsProvider

        return AwsProvider(project, graph)

    def notifier(self, target: str) -> Callable[[str, str, str], None] | None:
        """SNS topics (notify.py); boto3 is loaded only when one is named."""
        if not target.startswith("arn:aws:sns:"):
            return None
        from .client import sns_publisher

        return sns_publisher()


PROVIDER = AwsDefinition()
