"""Files bakehouse keeps (records, caches, built .debs) are written whole or not at all."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bakehouse.files import replacing, sha256_file, write_atomically


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "records" / "image.json"
    write_atomically(target, "old\n")
    write_atomically(target, "new\n", durable=True)
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["image.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "cache.json"
    write_atomically(target, b"kept")
    with pytest.raises(RuntimeError):
        with replacing(target) as partial:
            partial.write_bytes(b"half of a new fi")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"kept"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_sha256_of_a_file_larger_than_one_block(tmp_path: Path) -> None:
    data = bytes(range(256)) * 10_000
    (tmp_path / "big").write_bytes(data)
    assert sha256_file(tmp_path / "big") == hashlib.sha256(data).hexdigest()
