"""The content key and the reasons that explain a changed key."""

from __future__ import annotations

from datetime import UTC, datetime

from bakehouse.epoch import epoch, period_start, staleness
from bakehouse.fingerprint import compact, content_key, explain, summarise
from bakehouse.packages import ResolvedPackage


def summary(version: str = "1.0.4", script: str = "aaa", base: str = "base-1", arch: str = "amd64") -> dict:
    return summarise(
        provider="local", architecture=arch,
        definition={"provider": "local", "template": "t.j2", "vars": {}},
        files={"t.j2": "t", "scripts/s.sh": script},
        packages=(ResolvedPackage("hello-svc", version, "artifact", sha256=version * 3),),
        source=None,
        base_image={"bake": "base", "image": base},
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
    assert explain(summary(), summary(arch="arm64")) == ["architecture amd64 -> arm64"]


def test_epochs() -> None:
    moment = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    assert epoch("week", moment) == "2026-W47"
    assert epoch("day", moment) == "2026-11-22"
    assert epoch("month", moment) == "2026-11"
    assert epoch(None, moment) is None
    assert epoch("week", datetime(2027, 1, 1, tzinfo=UTC)) == "2026-W53"


def test_freshness_periods_start_at_utc_midnight_monday_and_the_first() -> None:
    now = datetime(2026, 11, 25, 9, 30, tzinfo=UTC)  # a Wednesday in 2026-W48
    assert period_start("week", now) == datetime(2026, 11, 23, tzinfo=UTC)
    assert period_start("month", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert period_start("day", now) == datetime(2026, 11, 25, tzinfo=UTC)
    sunday = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    assert staleness("week", now, sunday) == "older than this week (2026-W48 began 2026-11-23)"
    assert staleness("month", now, sunday) is None
    assert staleness("day", now, datetime(2026, 11, 25, tzinfo=UTC)) is None
    assert staleness(None, now, datetime(2000, 1, 1, tzinfo=UTC)) is None


def test_a_compact_summary_explains_like_a_full_one() -> None:
    full = summarise(
        provider="aws", architecture="amd64",
        definition={"provider": "aws", "template": "t.j2", "vars": {}},
        files={"t.j2": "a" * 64},
        packages=(ResolvedPackage("hello-svc", "1.0.4", "artifact", sha256="b" * 64),),
        source={"image": {"owner": "1", "name": "debian"}}, base_image=None,
    )
    short = compact(full)
    assert short["files"] == {"t.j2": "a" * 12} and short["packages"]["hello-svc"]["sha256"] == "b" * 12
    assert explain(short, {**full, "source": {"image": {"owner": "1", "name": "debian-2"}}}) == [
        "source image 1/debian -> image 1/debian-2"
    ]
    assert explain(short, {**full, "files": {"t.j2": "c" * 64}}) == ["template file t.j2 changed"]
