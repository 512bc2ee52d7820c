"""The HTTP application of `doit serve` (Starlette): Baker's routes, Spinnaker's bakery routes
(spinnaker.py) and the page (page.py), over one Runner of `doit bake:NAME` runs.

Every answer is JSON except the page and a bake's log; every error is JSON with one clear
`error` line and a 4xx (a bug is a 500 that says only that: no traceback reaches a client).
POSTs need the token when one is set (`Authorization: Bearer`, or Spinnaker's path prefix).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from ..commands.channels import channel_table, promote, rollback, tell_move
from ..decide import Planner
from ..errors import BakehouseError
from ..locks import running_bakes
from ..project import Project
from ..publish import publish_pending
from . import baker, page, spinnaker, views
from .guard import Guard
from .runs import Run, Runner

MAX_BODY = 64 * 1024  # a bake request is a few hundred bytes; Spinnaker's stage context a few KiB


class Settings:
    def __init__(self, root: Path, runner: Runner, token: str | None) -> None:
        self.root, self.runner, self.token = root, runner, token
        self.state_dir = Project.at(root).state_dir


def error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def authorised(request: Request, token: str | None) -> bool:
    if token is None:
        return True
    given = request.headers.get("authorization", "")
    scheme, _, value = given.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


def settings_of(request: Request) -> Settings:
    found: Settings = request.app.state.settings
    return found


async def known_bake(request: Request) -> tuple[str, Planner]:
    """The bake the path names, checked against the graph, and the planner that knows it."""
    name = request.path_params["bake"]
    p = await run_in_threadpool(views.planner, settings_of(request).root)
    if name not in p.graph.names:
        raise HTTPException(404, f"no bake '{name}' in bakes/")
    return str(name), p


# --- Baker's routes ---

async def ping(request: Request) -> Response:
    return PlainTextResponse("pong")


async def healthcheck(request: Request) -> Response:
    checks = await run_in_threadpool(views.health, settings_of(request).root)
    failing = [check["check"] for check in checks if not check["ok"]]
    body: dict[str, Any] = {"ok": not failing, "checks": checks}
    if failing:
        body["error"] = "failing: " + ", ".join(failing)
    return JSONResponse(body, status_code=500 if failing else 200)


async def status(request: Request) -> Response:
    """This server's runs, and the bakes running on this machine that it did not start (a
    terminal's `doit`, a CI job), each with where its log grows."""
    settings = settings_of(request)
    runs = [run.state.to_json() for run in settings.runner.all() if not run.ended]
    ours = {run["bake"] for run in runs}
    elsewhere = [{"bake": other.bake, "holder": other.holder, "base": other.base,
                  "log": f"/running/{other.bake}/log" if other.log else None}
                 for other in running_bakes(settings.state_dir / "locks") if other.bake not in ours]
    return JSONResponse({"running": [r for r in runs if r["state"] == "running"],
                         "queued": [r for r in runs if r["state"] == "queued"], "elsewhere": elsewhere})


async def running_log(request: Request) -> Response:
    """The log of a bake running on this machine, wherever it started, as far as it has grown."""
    settings = settings_of(request)
    bake = request.path_params["bake"]
    found = next((other for other in running_bakes(settings.state_dir / "locks") if other.bake == bake), None)
    logs = (settings.state_dir / "logs").resolve()
    if found is None or found.log is None or not found.log.resolve().is_relative_to(logs):
        return error(404, f"no bake of '{bake}' is running on this machine")
    try:
        return PlainTextResponse(found.log.read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return error(404, f"no log of the running bake of '{bake}' yet")


async def all_amis(request: Request) -> Response:
    p = await run_in_threadpool(views.planner, settings_of(request).root)
    return JSONResponse({"bakes": await run_in_threadpool(views.amis, p)})


async def amis_of(request: Request) -> Response:
    name, p = await known_bake(request)
    raw = request.query_params.get("limit", "10")
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= 1000:  # ASCII digits only, not superscripts
        return error(400, f"limit must be a whole number from 1 to 1000, not '{raw}'")
    return JSONResponse({"bake": name, "images": await run_in_threadpool(views.images_of, p, name, int(raw))})


async def plan_all(request: Request) -> Response:
    p = await run_in_threadpool(views.planner, settings_of(request).root)
    return JSONResponse(await run_in_threadpool(views.plan_of, p, []))


async def plan_one(request: Request) -> Response:
    name, p = await known_bake(request)
    return JSONResponse(await run_in_threadpool(views.plan_of, p, [name]))


async def channels(request: Request) -> Response:
    p = await run_in_threadpool(views.planner, settings_of(request).root)
    return JSONResponse({"bakes": await run_in_threadpool(channel_table, p, list(p.graph.names))})


async def move_channel(request: Request) -> Response:
    """POST /promote/{bake}/{channel} (optional JSON body: image, note) and POST
    /rollback/{bake}/{channel} (note): the move, as `doit promote` and `doit rollback` make it,
    then what it published; a refusal is one line of JSON, 400."""
    settings = settings_of(request)
    if not authorised(request, settings.token):
        return error(401, "moving a channel needs the server's token: Authorization: Bearer <token>")
    name, p = await known_bake(request)
    channel = request.path_params["channel"]
    body = await request.body()
    try:
        asked = json.loads(body) if body.strip() else {}
    except ValueError:
        return error(400, "the body must be JSON: {\"image\": \"...\", \"note\": \"...\"}, or empty")
    if not isinstance(asked, dict) or not all(isinstance(asked.get(key, ""), str) for key in ("image", "note")):
        return error(400, "the body must be JSON: {\"image\": \"...\", \"note\": \"...\"}, or empty")
    rolling_back = request.url.path.startswith("/rollback/")

    def move() -> dict[str, Any]:
        if rolling_back:
            made, before = rollback(p, name, channel, asked.get("note", ""))
        else:
            made, before = promote(p, name, channel, asked.get("image") or None, asked.get("note", ""))
        published: list[str] = []
        try:
            publish_pending(p, name, published.append)
        finally:
            if made is not None:  # the move stands, published or not
                tell_move(p, name, made, before)
        return {"bake": name, "channel": channel, "before": before,
                "image": before if made is None else made.image, "moved": made is not None, "published": published}

    try:
        return JSONResponse(await run_in_threadpool(move))
    except BakehouseError as problem:
        return error(400, str(problem))


async def bake(request: Request) -> Response:
    settings = settings_of(request)
    if not authorised(request, settings.token):
        return error(401, "starting a bake needs the server's token: Authorization: Bearer <token>")
    name, p = await known_bake(request)
    rebake = request.query_params.get("rebake", "false").lower()
    if rebake not in ("true", "false", "1", "0"):
        return error(400, f"rebake is true or false, not '{rebake}'")
    return await answer_bake(settings, p, name, rebake in ("true", "1"))


async def answer_bake(settings: Settings, p: Planner, name: str, forced: bool,
                      pins: dict[str, str] | None = None) -> Response:
    """An image of the bake's inputs (as `p` decides, with `pins`) exists: it, at once. Else
    the run's output as it comes (NDJSON); a run of the same bake and versions is shared."""
    if not forced and settings.runner.active_run(name, pins) is None:
        if await run_in_threadpool(views.up_to_date, p, name):
            outcome = await run_in_threadpool(views.outcome, settings.root, name, p)
            return JSONResponse({"bake": name, "state": "up to date", "result": outcome.__dict__})
    run, _ = settings.runner.start(name, forced, pins)
    return StreamingResponse(follow(run), media_type="application/x-ndjson",
                             headers={"X-Bake-Id": run.state.id, "Cache-Control": "no-store"})


async def baker_bake(request: Request) -> Response:
    """Baker's route, `POST /bake/{template}/{service}/{version}/{virt}` (baker.py)."""
    settings = settings_of(request)
    if not authorised(request, settings.token):
        return error(401, "starting a bake needs the server's token: Authorization: Bearer <token>")
    params = request.path_params
    try:
        p = await run_in_threadpool(views.planner, settings.root)
        name, pins = await run_in_threadpool(baker.choose, p, params["template"], params["service"],
                                             params["version"], params["virt"])
        if pins:  # decide as the bake will, the version pinned: one no source has is a 400
            p = await run_in_threadpool(views.planner, settings.root, {name: pins})
            await run_in_threadpool(p.decide, name)
    except spinnaker.Refused as refused:
        return error(refused.status, refused.message)
    except BakehouseError as failure:
        return error(400, str(failure))
    return await answer_bake(settings, p, name, False, pins)


async def follow(run: Run) -> AsyncIterator[str]:
    """The run's output as NDJSON: {"bake_id"}, then {"output": line} as each comes, then
    {"result": ...} when it ended. Only this request stops when its client goes away."""
    yield json.dumps({"bake_id": run.state.id, "bake": run.state.bake}) + "\n"
    sent = 0
    while True:
        ended = run.ended
        lines = run.lines[sent:]
        for line in lines:
            yield json.dumps({"output": line.rstrip("\n")}) + "\n"
        sent += len(lines)
        if ended and sent >= len(run.lines):
            yield json.dumps({"result": {"state": run.state.state, **(run.state.outcome.__dict__
                                                                        if run.state.outcome else {})}}) + "\n"
            return
        await asyncio.sleep(0.1)


async def bake_state(request: Request) -> Response:
    run = settings_of(request).runner.get(request.path_params["id"])
    if run is None:
        return error(404, f"no bake run '{request.path_params['id']}'")
    return JSONResponse(run.state.to_json())


async def bake_log(request: Request) -> Response:
    run = settings_of(request).runner.get(request.path_params["id"])
    if run is None:
        return error(404, f"no bake run '{request.path_params['id']}'")
    return PlainTextResponse(run.output())


async def home(request: Request) -> Response:
    settings = settings_of(request)
    p = await run_in_threadpool(views.planner, settings.root)
    rows = await run_in_threadpool(views.amis, p)
    planned = await run_in_threadpool(views.plan_of, p, [])
    active = {run.state.bake: run.state for run in settings.runner.all() if not run.ended}
    elsewhere = {other.bake: other.holder for other in running_bakes(settings.state_dir / "locks")
                 if other.bake not in active}
    return HTMLResponse(page.render(rows, planned, active, token_required=settings.token is not None,
                                    elsewhere=elsewhere))


# --- errors and limits ---

async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error(405, f"{request.method} is not allowed on {request.url.path}")
    if exc.status_code == 404 and exc.detail == "Not Found":
        return error(404, f"no route {request.url.path}")
    return error(exc.status_code, str(exc.detail))


async def user_error(request: Request, exc: Exception) -> Response:
    return error(400, str(exc))


async def server_error(request: Request, exc: Exception) -> Response:
    return error(500, "internal error: the server's log says more")


class LimitBody:
    """Refuses request bodies over MAX_BODY with a JSON 413, by header or as they stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > MAX_BODY:
            response = error(413, f"request bodies are at most {MAX_BODY} bytes")
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def create_app(root: Path, runner: Runner, token: str | None, allowed_hosts: tuple[str, ...] = ()) -> Starlette:
    routes = [
        Route("/", home),
        Route("/ping", ping),
        Route("/healthcheck", healthcheck),
        Route("/status", status),
        Route("/running/{bake}/log", running_log),
        Route("/amis", all_amis),
        Route("/amis/{bake}", amis_of),
        Route("/plan", plan_all),
        Route("/plan/{bake}", plan_one),
        Route("/bake/{bake}", bake, methods=["POST"]),
        Route("/channels", channels),
        Route("/promote/{bake}/{channel}", move_channel, methods=["POST"]),
        Route("/rollback/{bake}/{channel}", move_channel, methods=["POST"]),
        Route("/bake/{template}/{service}/{version}/{virt}", baker_bake, methods=["POST"]),
        Route("/bakes/{id}", bake_state),
        Route("/bakes/{id}/log", bake_log),
        *spinnaker.routes(),
    ]
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(runner.shutdown)  # stopping the server cancels its bakes as Ctrl-C does

    app = Starlette(
        lifespan=lifespan,
        routes=routes,
        middleware=[Middleware(Guard, allowed_hosts=allowed_hosts), Middleware(LimitBody)],
        exception_handlers={HTTPException: http_error, BakehouseError: user_error, Exception: server_error},
    )
    app.state.settings = Settings(root, runner, token)
    return app
