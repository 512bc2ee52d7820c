"""`doit promote`, `doit rollback` and `doit channels`: moving a bake's channels, and showing them.

`doit promote BAKE CHANNEL [IMAGE] [--note TEXT]` points CHANNEL at IMAGE (an image id, or
`BAKE@OTHER`; default: the image `latest` points at, the bake's newest), which must be complete
in every place the bake names. `doit rollback BAKE CHANNEL [--note TEXT]` points it back at the
image it pointed at before. Each move is recorded in the registry with who, when and why
(channels.py); a move that another runner's move beat is read again and tried again, so no
move is lost. Then the bake's [publish] targets that no longer hold what its channels point at
are written (publish.py). `doit channels [BAKE ...]` shows each channel, its image and age, and with one
bake its history (`--json`; `--format tfvars` or `github` gives `{bake: {channel: {place: id}}}`
for Terraform or a GitHub Actions output).
"""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from typing import Any, Callable, TextIO

from doit.exceptions import InvalidCommand

from ..channels import LATEST, ChannelError, ChannelMove, check_movable, current, moves_of, rollback_target, who
from ..decide import Planner
from ..epoch import now_utc
from ..errors import BakehouseError
from ..lookup import find_image
from ..notify import notify
from ..publish import publish_pending
from ..registry import ImageRecord, created_at
from ..retention import describe
from ..revoking import move_off
from ..revocation import latest, pointed_at
from ..tasks import planner_from_tasks
from ..tomlcheck import did_you_mean
from . import Command, trailing_flag

ATTEMPTS = 10  # moves recorded first by other runners, read again each time, before giving up
FORMATS = ("table", "json", "tfvars", "github")


def _now() -> str:
    return now_utc().strftime("%Y-%m-%dT%H:%M:%SZ")


def _bake(planner: Planner, name: str) -> str:
    if name not in planner.graph.names:
        raise ChannelError(f"no bake '{name}' in bakes/{did_you_mean(name, planner.graph.names)}")
    return name


def promote(planner: Planner, bake: str, channel: str, image_name: str | None, note: str) -> tuple[ChannelMove | None, str | None]:
    """Point `channel` at the image; (the move, or None if it pointed there already; where it pointed before)."""
    check_movable(_bake(planner, bake), channel, planner.graph[bake].channels)
    image = _image(planner, bake, image_name)
    registry = planner.provider_of(bake).registry
    for _ in range(ATTEMPTS):
        moves = registry.channel_moves(bake)
        before = current(moves, channel)
        if before == image.image_id:
            return None, before
        _refuse_revoked(planner, bake, image.image_id, channel)  # read after the moves: see revoking.py
        move = ChannelMove(channel, image.image_id, "promote", _now(), who(), note)
        if registry.add_channel_move(bake, move, len(moves)):
            try:
                _refuse_revoked(planner, bake, image.image_id, channel)
            except ChannelError as error:  # revoked while it was promoted: the revocation wins
                back = move_off(planner, bake, planner.now, who())
                raise ChannelError(f"{error}; it was revoked while it was promoted: "
                                   + "; ".join(change.line() for change in back)) from None
            return move, before
    raise ChannelError(f"{bake}: channel {channel}: other moves kept being recorded first; try again")


def rollback(planner: Planner, bake: str, channel: str, note: str) -> tuple[ChannelMove, str | None]:
    check_movable(_bake(planner, bake), channel, planner.graph[bake].channels)
    registry = planner.provider_of(bake).registry
    known = {image.image_id for image in planner.images(bake)}
    for _ in range(ATTEMPTS):
        moves = registry.channel_moves(bake)
        before = current(moves, channel)
        target = rollback_target(moves, channel)
        if target is not None and target not in known:
            raise ChannelError(f"{bake}: channel {channel} would go back to {target}, which is no longer there")
        if target is not None:
            _refuse_revoked(planner, bake, target, channel)
        move = ChannelMove(channel, target, "rollback", _now(), who(), note)
        if registry.add_channel_move(bake, move, len(moves)):
            return move, before
    raise ChannelError(f"{bake}: channel {channel}: other moves kept being recorded first; try again")


def tell_move(planner: Planner, bake: str, move: ChannelMove, before: str | None) -> None:
    """Notify [notify]'s receivers of a move (notify.py; a failed delivery is a warning on stderr)."""
    notify(planner.project, move.action, {"bake": bake, "channel": move.channel, "image": move.image,
                                          "before": before, "note": move.note},
           lambda line: sys.stderr.write(line + "\n"))


def _refuse_revoked(planner: Planner, bake: str, image_id: str, channel: str) -> None:
    """A channel may not point at a revoked image (read afresh: another runner may have revoked it)."""
    planner.forget(bake)
    found = next((image for image in planner.images(bake) if image.image_id == image_id), None)
    if found is not None and found.revoked is not None and found.revoked.bars(channel, planner.now):
        raise ChannelError(f"{image_id} is {found.revoked.describe()}: no channel may point at it "
                           f"(doit restore {image_id} takes the revocation back)")


def _image(planner: Planner, bake: str, name: str | None) -> ImageRecord:
    """The image to promote: the one named, or the newest; complete in every place of the bake."""
    image = find_image(planner, name or f"{bake}@{LATEST}")
    if image.bake != bake:
        raise ChannelError(f"{image.image_id} is an image of {image.bake}, not of {bake}")
    provider = planner.provider_of(bake)
    missing = [place for place in provider.places(planner.graph[bake]) if place not in image.locations]
    if missing:
        raise ChannelError(f"{image.image_id} is not complete: it is missing in {', '.join(missing)} "
                           f"(doit bake:{bake} completes it)")
    return image


def channel_table(planner: Planner, bakes: list[str]) -> list[dict[str, Any]]:
    """Each bake's channels: `latest`, then its declared ones, with image, places, age and history."""
    rows = []
    for bake in bakes:
        images = planner.images(bake)
        by_id = {image.image_id: image for image in images}
        moves = planner.provider_of(bake).registry.channel_moves(bake)
        channels = [{"channel": LATEST, **_pointing(latest(images, planner.now), planner.now), "history": []}]
        for name in planner.graph[bake].channels:
            image_id = pointed_at(moves, name, by_id, planner.now)
            shown = _pointing(by_id.get(image_id or ""), planner.now)
            if image_id is not None and image_id not in by_id:
                shown = {**shown, "image": image_id, "missing": True}
            channels.append({"channel": name, **shown, "history": [move.to_json() for move in moves_of(moves, name)]})
        rows.append({"bake": bake, "channels": channels})
    return rows


def _pointing(image: ImageRecord | None, now: datetime) -> dict[str, Any]:
    if image is None:
        return {"image": None, "locations": {}, "age": None}
    return {"image": image.image_id, "locations": dict(image.locations), "age": describe(max(now - created_at(image), now - now))}


def as_text(rows: list[dict[str, Any]], history: bool) -> str:
    table = [("BAKE", "CHANNEL", "IMAGE", "AGE", "LAST MOVE")]
    for row in rows:
        for channel in row["channels"]:
            last = channel["history"][-1] if channel["history"] else None
            moved = "the newest image" if channel["channel"] == LATEST else "never moved" if last is None else \
                f"{last['action']} by {last['by']} at {last['at']}" + (f": {last['note']}" if last["note"] else "")
            image = channel["image"] or "-"
            if channel.get("missing"):
                image += " (gone)"
            table.append((row["bake"], channel["channel"], image, channel["age"] or "-", moved))
    widths = [max(len(line[column]) for line in table) for column in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line[:4], widths)) + "  " + line[4] for line in table]
    if history:
        for row in rows:
            for channel in row["channels"]:
                if channel["history"]:
                    lines.append(f"\n{row['bake']}@{channel['channel']}, oldest move first:")
                    lines += [f"  {move['at']}  {move['action']:<8}  {move['image'] or '(nothing)'}  by {move['by']}"
                              + (f": {move['note']}" if move["note"] else "") for move in channel["history"]]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def as_outputs(rows: list[dict[str, Any]], form: str) -> str:
    """{bake: {channel: {place: image id}}}: a tfvars file (HCL takes JSON's object syntax) or a
    GitHub Actions output line."""
    images = {row["bake"]: {channel["channel"]: channel["locations"] for channel in row["channels"]} for row in rows}
    text = json.dumps(images, sort_keys=True)
    return f"images = {json.dumps(images, indent=2, sort_keys=True)}\n" if form == "tfvars" else f"images={text}\n"


Moved = tuple[str, ChannelMove | None, str | None]  # the line to print, the move made (if any), where it was


def moved(planner: Planner, bake: str, move: Callable[[], Moved], out: TextIO) -> int:
    """A channel move the command line asked for: its line, then what it published, then the
    notification; a refusal or a failed publish is one line (exit 2)."""
    try:
        line, made, before = move()
    except BakehouseError as error:
        sys.stderr.write(f"ERROR: {error}\n")
        return 2
    out.write(line + "\n")
    status = 0
    try:
        publish_pending(planner, bake, lambda line: out.write(line + "\n"))
    except BakehouseError as error:
        sys.stderr.write(f"ERROR: {error}\n")
        status = 2
    if made is not None:  # the move stands, published or not
        out.flush()
        tell_move(planner, bake, made, before)
    return status


class PromoteCommand(Command):
    name = "promote"
    doc_purpose = "point a bake's channel at an image (default: its newest)"
    doc_usage = "BAKE CHANNEL [IMAGE]"
    doc_description = ("The image must be complete in every place the bake names. The move is kept, with who, "
                       "when and --note, in the registry.")
    exit_codes = ((0, "moved, or already there"), (2, "refused (unknown channel, incomplete image...)"), (3, "a bad option"))
    cmd_options = ({"name": "note", "long": "note", "type": str, "default": "", "help": "why (kept in the history)"},)

    def _execute(self, note: str, pos_args: list[str]) -> int:
        if len(pos_args or []) not in (2, 3):
            raise InvalidCommand("doit promote takes a bake, a channel and optionally an image: doit promote hello stable")
        bake, channel, image = pos_args[0], pos_args[1], (pos_args[2] if len(pos_args) == 3 else None)
        planner = planner_from_tasks(self.task_list)

        def move() -> Moved:
            made, before = promote(planner, bake, channel, image, note)
            return (f"{bake}@{channel} already points at {before}" if made is None
                    else f"{bake}@{channel}: {before or 'nothing'} -> {made.image}"), made, before

        return moved(planner, bake, move, self.outstream)


class RollbackCommand(Command):
    name = "rollback"
    doc_purpose = "point a bake's channel back at the image it pointed at before"
    doc_usage = "BAKE CHANNEL"
    doc_description = "Each rollback goes one move further back; the move is kept like a promotion."
    exit_codes = ((0, "moved back"), (2, "refused (nothing to roll back to...)"), (3, "a bad option"))
    cmd_options = ({"name": "note", "long": "note", "type": str, "default": "", "help": "why (kept in the history)"},)

    def _execute(self, note: str, pos_args: list[str]) -> int:
        if len(pos_args or []) != 2:
            raise InvalidCommand("doit rollback takes a bake and a channel: doit rollback hello stable")
        planner = planner_from_tasks(self.task_list)

        def move() -> Moved:
            made, before = rollback(planner, pos_args[0], pos_args[1], note)
            return f"{pos_args[0]}@{pos_args[1]}: {before} -> {made.image or 'nothing'} (rolled back)", made, before

        return moved(planner, pos_args[0], move, self.outstream)


class ChannelsCommand(Command):
    name = "channels"
    doc_purpose = "show each bake's channels, their images, ages and history"
    doc_usage = "[BAKE ...]"
    doc_description = "With one bake, each channel's history too."
    exit_codes = ((0, "shown"), (2, "a channel history could not be read"), (3, "a bad option"))
    cmd_options = (
        {"name": "as_json", "long": "json", "type": bool, "default": False, "help": "print JSON"},
        {"name": "form", "long": "format", "type": str, "default": "table",
         "help": "table, json, tfvars (Terraform) or github (an Actions output: images=...)"},
    )

    def _execute(self, as_json: bool, form: str, pos_args: list[str]) -> int:
        trailing, pos_args = trailing_flag(pos_args, "--json")
        form = "json" if as_json or trailing else form
        if form not in FORMATS:
            raise InvalidCommand(f"--format takes {', '.join(FORMATS)}, not '{form}'")
        planner = planner_from_tasks(self.task_list)
        try:
            bakes = [_bake(planner, name) for name in pos_args] or list(planner.graph.names)
            rows = channel_table(planner, bakes)
        except BakehouseError as error:
            sys.stderr.write(f"ERROR: {error}\n")
            return 2
        if form == "json":
            self.outstream.write(json.dumps({"bakes": rows}, indent=2) + "\n")
        elif form in ("tfvars", "github"):
            self.outstream.write(as_outputs(rows, form))
        else:
            self.outstream.write(as_text(rows, history=len(bakes) == 1))
        return 0
