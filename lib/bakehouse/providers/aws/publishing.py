"""Publishing AMIs where deployments read them (publish.py): SSM parameters of data type
aws:ec2:image, one per region, and new versions of launch templates. Each value is read back
before it counts (AWS checks an aws:ec2:image value after it answers, and silently drops one it
refuses). boto3 is reached only through client.py."""

from __future__ import annotations

from typing import Any

from ...model import Bake
from ...publish import LaunchTemplate, Publication, PublishError, PublishSpec
from ...registry import ImageRecord
from .client import AwsError, Ec2

MISSING_TEMPLATE = "(no such launch template)"


def publications(ec2: Ec2, bake: Bake, regions: tuple[str, ...], spec: PublishSpec,
                 pointed: dict[str, ImageRecord | None]) -> list[Publication]:
    found = []
    for channel in spec.channels:
        image = pointed[channel]
        for region in regions:
            if spec.ssm is None:
                break
            name = spec.ssm.format(bake=bake.name, channel=channel, region=region)
            read = ec2.service_call("ssm", region, "get_parameter", missing_ok=("ParameterNotFound",), Name=name)
            found.append(Publication("ssm", name, region, channel, image, _ami(image, region),
                                     read.get("Parameter", {}).get("Value")))
    for template in spec.launch_templates:
        image = pointed[template.channel]
        for region in regions:
            found.append(Publication("launch-template", template.name, region, template.channel, image,
                                     _ami(image, region), _template_image(ec2, region, template)))
    return found


def publish(ec2: Ec2, bake: Bake, spec: PublishSpec, publication: Publication) -> None:
    try:
        if publication.kind == "ssm":
            _put_parameter(ec2, bake, publication)
        else:
            template = next(t for t in spec.launch_templates
                            if t.name == publication.name and t.channel == publication.channel)
            _new_version(ec2, bake, template, publication)
    except AwsError as error:
        raise PublishError(f"{bake.name}: publish {publication.target}: {error}") from None


def _ami(image: ImageRecord | None, region: str) -> str | None:
    return None if image is None else image.locations.get(region)


def _put_parameter(ec2: Ec2, bake: Bake, publication: Publication) -> None:
    ec2.service_call("ssm", publication.place, "put_parameter", Name=publication.name, Value=publication.want,
                     Type="String", DataType="aws:ec2:image", Overwrite=True,
                     Description=f"bakehouse: {bake.name}@{publication.channel}")
    read = ec2.service_call("ssm", publication.place, "get_parameter", Name=publication.name)
    held = read.get("Parameter", {}).get("Value")
    if held != publication.want:
        raise PublishError(f"{bake.name}: publish {publication.target}: it holds {held!r} after {publication.want} "
                           "was written (AWS refused the value?)")


def _template_image(ec2: Ec2, region: str, template: LaunchTemplate) -> str | None:
    versions = ec2.call(region, "describe_launch_template_versions",
                                missing_ok=("InvalidLaunchTemplateName.NotFoundException", "InvalidLaunchTemplateId.NotFound"),
                                LaunchTemplateName=template.name,
                                Versions=["$Default" if template.make_default else "$Latest"])
    if not versions:
        return MISSING_TEMPLATE
    found = versions.get("LaunchTemplateVersions") or [{}]
    return found[0].get("LaunchTemplateData", {}).get("ImageId")


def _new_version(ec2: Ec2, bake: Bake, template: LaunchTemplate, publication: Publication) -> None:
    """A new version made from the default version's full data with ImageId replaced (on
    AWS SourceVersion would copy the rest; copying it here is right on both), then, if asked,
    made the default, and read back."""
    region = publication.place
    if publication.have == MISSING_TEMPLATE:
        raise PublishError(f"{bake.name}: publish {publication.target}: no launch template {template.name} in {region} "
                           "(create it first: bakehouse adds versions, it does not make templates)")
    default = ec2.call(region, "describe_launch_template_versions", LaunchTemplateName=template.name,
                               Versions=["$Default"])["LaunchTemplateVersions"][0]
    data: dict[str, Any] = {**default.get("LaunchTemplateData", {}), "ImageId": publication.want}
    made = ec2.call(region, "create_launch_template_version", LaunchTemplateName=template.name,
                            LaunchTemplateData=data,
                            VersionDescription=f"bakehouse: {bake.name}@{publication.channel}"[:255])
    number = made["LaunchTemplateVersion"]["VersionNumber"]
    if template.make_default:
        ec2.call(region, "modify_launch_template", LaunchTemplateName=template.name,
                         DefaultVersion=str(number))
    read = ec2.call(region, "describe_launch_template_versions", LaunchTemplateName=template.name,
                            Versions=[str(number)])["LaunchTemplateVersions"][0]
    if read.get("LaunchTemplateData", {}).get("ImageId") != publication.want:
        raise PublishError(f"{bake.name}: publish {publication.target}: version {number} does not hold {publication.want}")
