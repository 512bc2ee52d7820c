"""The content key and the reasons that explain a changed key."""

from __future__ import annotations

from datetime import UTC, datetime

from bakehouse.epoch import epoch
from bakehouse.fingerprint import compact, content_key, explain, summarise
from bakehouse.packages import ResolvedPackage


def summary(version: str = "1.0.4", script: str = "aaa", base: str = "base-1", week: str = "2026-W47") -> dict:
    return summarise(
        definition={"provider": "local", "template": "t.j2", "vars": {}},
        files={"t.j2": "t", "scripts/s.sh": script},
        packages=(ResolvedPackage("hello-svc", version, "artifact", sha256=version * 3),),
        source=None,
        base_image={"bake": "base", "ids": {"local": base}},
        epoch=week,
    )


def test_the_key_depends_on_content_only() -> None:
    assert content_key(summary()) == content_key(summary())
    assert content_key(summary()) != content_key(summary(version="1.0.5"))
    assert len(content_key(summary())) == 64


def test_each_change_is_named() -> None:
    assert explain(None, summary()) == ["no image yet"]
    assert explain(summary(), summary(version="1.0.5")) == ["hello-svc 1.0.4 -> 1.0.5"]
    assert explain(summary(), summary(script="bbb")) == ["template file scripts/s.sh changed"]
    assert explain(summary(), summary(base="base-2")) == ["base image base-1 -> base-2"]
    assert explain(summary(), summary(week="2026-W48")) == ["epoch 2026-W47 -> 2026-W48"]


def test_epochs() -> None:
    moment = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    assert epoch("week", moment) == "2026-W47"
    assert epoch("day", moment) == "2026-11-22"
    assert epoch("month", moment) == "2026-11"
    assert epoch(None, moment) is None
    assert epoch("week", datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"


def test_a_compact_summary_explains_like_a_full_one() -> None:
    full = summarise(
        definition={"provider": "aws", "template": "t.j2", "vars": {}},
        files={"t.j2": "a" * 64},
        packages=(ResolvedPackage("hello-svc", "1.0.4", "artifact", sha256="b" * 64),),
        source={"ids": {"us-east-1": "ami-1"}}, base_image=None, epoch=None,
    )
    short = compact(full)
    assert short["files"] == {"t.j2": "a" * 12} and short["packages"]["hello-svc"]["sha256"] == "b" * 12
    assert explain(short, {**full, "epoch": "2026-W48"}) == ["epoch None -> 2026-W48"]
    assert explain(short, {**full, "files": {"t.j2": "c" * 64}}) == ["template file t.j2 changed"]
