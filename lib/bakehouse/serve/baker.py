"""Baker's own bake route, as its README showed it: `POST /bake/{template}/{service}/{version}/{virt}`
(`/bake/chroot-example/simple-service/1.0.4/hvm`): bake what installs package `service` at
`version`.

- `service` chooses the bake, as Spinnaker's `package` does (spinnaker.choose_bake): the one
  bake that installs that package; where several do, `template` chooses among them.
- `template` is a template's name without `.pkr.hcl.j2` (`amazon-ebs`, `local-service`), and
  must be the chosen bake's; Baker's template names (`chroot-example`) name nothing here.
- `version` is the package's: a package built here must have it; one taken from a repository
  is baked at it (a pin, as Spinnaker's requests are).
- `virt` is `hvm`: every image bakehouse makes is (Baker's `pv` is refused, in one line).

The answer (app.py) is the bake's NDJSON stream, as `POST /bake/{bake}`, or at once when an
image of those inputs exists. Every refusal is one line of JSON with its status."""

from __future__ import annotations

from ..decide import Planner
from ..errors import BakehouseError
from ..packages import ResolvedPackage
from .spinnaker import Refused

TEMPLATE_SUFFIX = ".pkr.hcl.j2"
VIRTUALISATION = ("hvm",)


def choose(p: Planner, template: str, service: str, version: str, virt: str) -> tuple[str, dict[str, str]]:
    """The bake to run and the versions to pin, or Refused."""
    if virt not in VIRTUALISATION:
        raise Refused(400, f"virtualisation type '{virt}': bakehouse bakes hvm images only")
    installs: dict[str, ResolvedPackage] = {}
    for name in p.graph.names:
        try:
            found = {package.name: package for package in p.decide(name).packages}
        except BakehouseError:
            continue
        if service in found:
            installs[name] = found[service]
    if not installs:
        raise Refused(404, f"no bake in this repository installs {service}")
    fitting = [name for name in installs if p.graph[name].template.removesuffix(TEMPLATE_SUFFIX) == template]
    if not fitting:
        templates = sorted({p.graph[name].template.removesuffix(TEMPLATE_SUFFIX) for name in installs})
        raise Refused(404, f"template '{template}': the bakes that install {service} use {', '.join(templates)}")
    if len(fitting) > 1:
        raise Refused(400, f"bakes {', '.join(fitting)} all install {service} with template {template}: "
                           "keep the package in one bake")
    name, package = fitting[0], installs[fitting[0]]
    if version == package.version:
        return name, {}
    if package.origin in ("source", "artifact"):  # built here: the repository decides its version
        raise Refused(400, f"{service}: bake {name} installs version {package.version} "
                           f"(built in this repository), not {version}")
    return name, {service: version}
