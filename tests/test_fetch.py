"""Fetching from package repositories: a mirror that hiccups is asked again, a missing file
is not (a real HTTP server on 127.0.0.1, in this process, stopped by the test)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from bakehouse import aptrepo
from bakehouse.errors import PackageError


class Flaky(http.server.BaseHTTPRequestHandler):
    answers: list[int] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        status = self.answers.pop(0) if self.answers else 200
        self.send_response(status)
        self.end_headers()
        if status == 200:
            self.wfile.write(b"index")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def mirror(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(aptrepo, "FETCH_BACKOFF_SECONDS", 0.01)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/Release"
    server.shutdown()
    server.server_close()


def test_a_mirror_that_answers_5xx_now_and_then_is_asked_again(mirror: str) -> None:
    Flaky.answers = [503, 502]
    assert aptrepo.fetch_url(mirror) == b"index"


def test_a_mirror_that_keeps_failing_is_one_line(mirror: str) -> None:
    Flaky.answers = [503, 503, 503]
    with pytest.raises(PackageError, match=r"cannot fetch http://127\.0\.0\.1:\d+/Release: HTTP 503"):
        aptrepo.fetch_url(mirror)


def test_a_missing_file_and_a_client_error_are_not_asked_again(mirror: str) -> None:
    Flaky.answers = [404, 200]
    with pytest.raises(aptrepo.MissingIndex):
        aptrepo.fetch_url(mirror)
    Flaky.answers = [403, 200]
    with pytest.raises(PackageError, match="HTTP 403"):
        aptrepo.fetch_url(mirror)
