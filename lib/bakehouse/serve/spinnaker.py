"""Spinnaker's bakery API (Rosco's routes, as Orca, Gate and Deck call them), so a Spinnaker
Bake stage whose bakery URL points at `doit serve` bakes with bakehouse, unchanged.

The contract (docs/reference/http-api.md, "Spinnaker's bakery API"): a BakeRequest is the stage context in
snake_case; its `package` (space-separated; Orca writes a CI artifact as `hello-svc_1.0.4_all`)
names the bake: the one bake in this repository that installs every package named. A version
in the request must be the version the repository builds or pins. `?rebake=1` (the string
"1", as Rosco reads it) forces a new bake. A POST is idempotent: while the bake runs, or once
it is done and up to date, the same status (same id) comes back, so Orca's re-POSTs after a
5xx or a dropped connection start nothing new.

BakeStatus is {"id", "state", "result", "resource_id"}, id == resource_id == the run's id:
RUNNING (result null), COMPLETED + SUCCESS, or CANCELED + FAILURE for a failed bake.
When a token is set, these routes take it as a path prefix (`/t/{token}/api/v1/...`): Orca
sends no credentials and cannot be told to.
"""

from __future__ import annotations

import hmac
import json
from datetime import datetime, timezone
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from ..decide import Planner
from ..errors import BakehouseError, DefinitionError
from ..project import Project
from ..projectfile import PROJECT_FILE, project_table
from ..tomlcheck import reject_unknown
from . import views
from .runs import FAILED, SUCCEEDED, Run

LABELS = ("release", "candidate", "previous", "unstable", "foundation")  # Rosco's base_label enum
CLOUD_PROVIDERS = ("aws", "azure", "docker", "gce", "openstack", "titus", "oracle", "alicloud",
                   "huaweicloud", "tencentcloud")
MAX_BODY = 64 * 1024
NEEDS_TOKEN = "this bakery needs its token as a path prefix of the bakery URL: /t/<token>/"


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def rosco_error(status: int, message: str) -> JSONResponse:
    """An error as Rosco's (kork's) handlers shape it; Orca shows `messages[0]` or `message`."""
    reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 413: "Payload Too Large"}.get(status, "Error")
    return JSONResponse({
        "timestamp": int(datetime.now(timezone.utc).timestamp() * 1000), "status": status, "error": reason,
        "message": message, "messages": [message],
    }, status_code=status)


def bake_status(run: Run) -> dict[str, Any]:
    state = {SUCCEEDED: "COMPLETED", FAILED: "CANCELED"}.get(run.state.state, "RUNNING")
    result = {SUCCEEDED: "SUCCESS", FAILED: "FAILURE"}.get(run.state.state)
    return {"id": run.state.id, "state": state, "result": result, "resource_id": run.state.id}


def base_os(p: Planner, name: str) -> str:
    """The OS a bake's images start from: its root base's suite (local) or `os` (AWS)."""
    root = p.graph.chain(name)[0]
    return p.provider_of(root.name).os_name(root)


def base_images(p: Planner) -> list[dict[str, Any]]:
    """One base image per distinct base OS of the repository's bakes (Rosco's BaseImage)."""
    seen: dict[str, dict[str, Any]] = {}
    for name in p.graph.names:
        os_name = base_os(p, name)
        root = p.graph.chain(name)[0]
        seen.setdefault(os_name, {
            "id": os_name, "shortDescription": os_name,
            "detailedDescription": root.description or f"the {root.name} bake's images",
            "packageType": p.provider_of(root.name).package_format(root).upper(),  # DEB, or RPM (Amazon Linux)
            "templateFile": root.template, "osType": "linux", "customRepository": None,
        })
    return list(seen.values())


def parse_package(word: str) -> tuple[str, str | None]:
    """`hello-svc_1.0.4_all` -> (hello-svc, 1.0.4); `hello-svc_1.0.4` and `hello-svc` too."""
    name, _, rest = word.removesuffix(".deb").partition("_")
    version = rest.split("_")[0] if rest else None
    return name, version or None


def base_labels(project: Project) -> dict[str, str]:
    """bakehouse.toml's `[spinnaker] base_labels = { release = "stable", ... }`: the channel of
    a service's base that each of Rosco's base labels selects. Opt-in: Rosco sends
    `base_label: release` by default, and a label no table maps leaves the bake as it is."""
    table = project_table(project, "spinnaker") or {}
    reject_unknown(PROJECT_FILE, "spinnaker.", table, ("base_labels",))
    labels = table.get("base_labels", {})
    if not isinstance(labels, dict) or not all(isinstance(value, str) for value in labels.values()):
        raise DefinitionError(f"{PROJECT_FILE}: spinnaker.base_labels must be a table of channel names: "
                              '{ release = "stable" }')
    for label in labels:
        if label not in LABELS:
            raise DefinitionError(f"{PROJECT_FILE}: spinnaker.base_labels: {label!r} is not one of Rosco's "
                                  f"labels ({', '.join(LABELS)})")
    return dict(labels)


def base_channel_for(p: Planner, name: str, label: str | None) -> str | None:
    """The base channel a request's base_label selects for bake `name`, or None (no label, or
    one bakehouse.toml does not map)."""
    channel = base_labels(p.project).get(label or "")
    if channel is None:
        return None
    bake = p.graph[name]
    if bake.base is None:
        raise Refused(400, f"base_label '{label}': bake {name} is a base image; a base label chooses a service's base")
    if channel not in p.graph[bake.base].channels:
        raise Refused(400, f"base_label '{label}' selects channel {channel}, which {bake.base} does not have "
                           f"(its channels: {', '.join(p.graph[bake.base].channels)})")
    return channel


def choose_bake(p: Planner, request: dict[str, Any], region: str) -> tuple[str, dict[str, str]]:
    """The one bake that installs every package the request names, checked against it, and
    the versions to pin: those asked for of packages it takes from a repository."""
    words = str(request.get("package") or "").split()
    if not words:
        raise Refused(400, "the request names no package (its 'package' is empty)")
    wanted = [parse_package(word) for word in words]
    label = request.get("base_label")
    if label not in (None, "") and label not in LABELS:
        raise Refused(400, f"base_label '{label}' is not one of {', '.join(LABELS)}")
    candidates: list[tuple[str, dict[str, Any]]] = []
    for name in p.graph.names:
        try:
            installed = {package.name: package for package in p.decide(name).packages}
        except BakehouseError:
            continue
        if all(package_name in installed for package_name, _ in wanted):
            candidates.append((name, installed))
    names = " ".join(name for name, _ in wanted)
    asked_os = request.get("base_os")
    if asked_os and len(candidates) > 1:
        candidates = [(name, found) for name, found in candidates if base_os(p, name) == asked_os]
    if not candidates:
        raise Refused(404, f"no bake in this repository installs {names}")
    if len(candidates) > 1:
        raise Refused(400, f"bakes {', '.join(n for n, _ in candidates)} all install {names}: "
                      "name one with base_os, or keep the package in one bake")
    name, installed = candidates[0]
    pins: dict[str, str] = {}
    for package_name, version in wanted:
        package = installed[package_name]
        if version is None or version == package.version:
            continue
        if package.origin in ("source", "artifact"):  # built here: the repository decides its version
            raise Refused(400, f"{package_name}: bake {name} installs version {package.version} "
                               f"(built in this repository), not {version}")
        pins[package_name] = version
    places = p.provider_of(name).places(p.graph[name])
    if places != ("local",) and region not in places:
        raise Refused(400, f"bake {name} is not baked in {region} (its regions: {', '.join(places)})")
    return name, pins


async def body_of(request: Request) -> dict[str, Any]:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise Refused(413, f"request bodies are at most {MAX_BODY} bytes")
    try:
        found = json.loads(data or b"{}")
    except ValueError:
        raise Refused(400, "the request body is not JSON") from None
    except RecursionError:
        raise Refused(400, "the request body is nested too deeply to be a bake request") from None
    if not isinstance(found, dict):
        raise Refused(400, "the request body is not a JSON object")
    try:  # JSON's \u escapes can spell half a character (a lone surrogate): no text holds one
        json.dumps(found, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(400, "the request body holds a lone surrogate (\\ud800-\\udfff), which is not text") from None
    return found


def token_ok(request: Request, starts_work: bool = False) -> bool:
    """A POST needs the token when one is set; a token given in the path must be right."""
    token = request.app.state.settings.token
    if "token" in request.path_params:
        return token is None or hmac.compare_digest(str(request.path_params["token"]).encode(), token.encode())
    return token is None or not starts_work


async def post_bake(request: Request) -> Response:
    settings = request.app.state.settings
    if not token_ok(request, starts_work=True):
        return rosco_error(401, NEEDS_TOKEN)
    region = request.path_params["region"]
    try:
        body = await body_of(request)
        p = await run_in_threadpool(views.planner, settings.root)
        name, pins = await run_in_threadpool(choose_bake, p, body, region)
        channel = await run_in_threadpool(base_channel_for, p, name, body.get("base_label"))
        if pins or channel:  # decide as the bake will: with those versions pinned, on that base channel
            p = await run_in_threadpool(views.planner, settings.root, {name: pins} if pins else None,
                                        {name: channel} if channel else None)
            await run_in_threadpool(p.decide, name)
    except Refused as refused:
        return rosco_error(refused.status, refused.message)
    except BakehouseError as error:  # e.g. a version the repository does not have
        return rosco_error(400, str(error))
    forced = request.query_params.get("rebake") == "1"
    running = None if forced else settings.runner.active_run(name, pins, channel)
    if running is not None:
        return JSONResponse(bake_status(running))
    place = region if p.provider_of(name).places(p.graph[name]) != ("local",) else "local"
    ready = None if forced else await run_in_threadpool(views.ready_in, p, name, place)
    if ready is not None:  # "previously baked": COMPLETED at once, the same id every time
        return JSONResponse(bake_status(settings.runner.done(name, ready)))
    run, _ = settings.runner.start(name, forced, pins, channel)
    return JSONResponse(bake_status(run))


def _find(request: Request, status: int, what: str) -> Run | Response:
    """The run the path names, or the error Rosco answers: a wrong token, an unknown id."""
    if not token_ok(request):
        return rosco_error(401, NEEDS_TOKEN)
    run: Run | None = request.app.state.settings.runner.get(request.path_params["id"])
    if run is None or (what == "bake" and (run.state.state != SUCCEEDED or run.state.outcome is None)):
        return rosco_error(status, f"Unable to retrieve {what} for '{request.path_params['id']}'.")
    return run


async def get_status(request: Request) -> Response:
    run = _find(request, 400, "status")
    return run if isinstance(run, Response) else JSONResponse(bake_status(run))


async def get_bake(request: Request) -> Response:
    run = _find(request, 400, "bake")
    if isinstance(run, Response):
        return run
    assert run.state.outcome is not None
    region = request.path_params["region"]
    outcome = run.state.outcome
    locations = outcome.locations
    reference = locations.get(region) or locations.get("local") or next(iter(locations.values()), "")
    location = region if region in locations else next(iter(locations), region)
    artifact = {"type": "aws/image" if region in locations else "bakehouse/oci-image", "name": outcome.image,
                "location": location, "reference": reference, "uuid": run.state.id,
                "metadata": {"bake": run.state.bake, "image": outcome.image, "base_image": outcome.base_image}}
    return JSONResponse({"id": run.state.id, "ami": reference, "image_name": outcome.image,
                         "base_ami": outcome.base_image, "regions": sorted(locations), "artifact": artifact,
                         "artifacts": [artifact]})


async def get_logs(request: Request) -> Response:
    run = _find(request, 404, "logs")
    return run if isinstance(run, Response) else JSONResponse({"logsContent": run.output()})


async def bake_options(request: Request) -> Response:
    p = await run_in_threadpool(views.planner, request.app.state.settings.root)
    images = await run_in_threadpool(base_images, p)
    providers = request.path_params.get("cloud_provider")
    if providers is None:
        used = sorted({"aws" if p.graph[n].provider == "aws" else "docker" for n in p.graph.names})
        return JSONResponse([{"cloudProvider": cp, "baseImages": images} for cp in used])
    if providers not in CLOUD_PROVIDERS:
        return _options_missing(f"Bake options not found for cloud provider {providers}.")
    wanted = request.path_params.get("base_image")
    if wanted is None:
        return JSONResponse({"cloudProvider": providers, "baseImages": images})
    found = next((image for image in images if image["id"] == wanted), None)
    if found is None:
        ids = ", ".join(image["id"] for image in images)
        return _options_missing(f"Bake options not found. Can't find base image with id {wanted} in "
                                f"{providers} base images: {ids}")
    return JSONResponse(found)


def _options_missing(message: str) -> JSONResponse:
    return JSONResponse({"error": "bake.options.not.found", "status": "NOT_FOUND", "messages": [message]},
                        status_code=404)


async def delete_requests(request: Request) -> Response:
    """Orca's execution clean-up: bakehouse keeps images by its own retention (doit prune)."""
    return JSONResponse({})


def _routes() -> list[BaseRoute]:
    return [
        Route("/api/v1/{region}/bake", post_bake, methods=["POST"]),
        Route("/api/v1/{region}/status/{id}", get_status),
        Route("/api/v1/{region}/bake/{id}", get_bake),
        Route("/api/v1/{region}/logs/{id}", get_logs),
        Route("/api/v1/bakes/delete-requests", delete_requests, methods=["POST"]),
        Route("/bakeOptions", bake_options),
        Route("/bakeOptions/{cloud_provider}", bake_options),
        Route("/bakeOptions/{cloud_provider}/baseImages/{base_image}", bake_options),
    ]


def routes() -> list[BaseRoute]:
    """The routes at the root, and again under /t/{token} for a bakery URL that carries it."""
    return [*_routes(), Mount("/t/{token}", routes=_routes())]
