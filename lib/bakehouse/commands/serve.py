"""`doit serve [--host 127.0.0.1] [--port 8080]`: serve this repository's bakes over HTTP
(serve/: Baker's routes, Spinnaker's bakery routes, a page), with uvicorn.

It binds 127.0.0.1 by default. A token (BAKEHOUSE_SERVE_TOKEN, or --token-file) guards every
POST; on an address beyond loopback the server refuses to start without one. Requests by a
name it does not answer to, and changes from another site's page, are refused (serve/guard.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import sys
from pathlib import Path

from doit.exceptions import InvalidCommand

from ..tasks import planner_from_tasks
from . import Command

TOKEN_VARIABLE = "BAKEHOUSE_SERVE_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(token_file: str) -> str | None:
    if token_file:
        try:
            token = Path(token_file).read_text(encoding="utf-8").strip()
        except OSError as error:
            raise InvalidCommand(f"--token-file {token_file}: {error.strerror}") from None
        if not token:
            raise InvalidCommand(f"--token-file {token_file} is empty")
        return token
    return os.environ.get(TOKEN_VARIABLE) or None


class ServeCommand(Command):
    """The `doit serve` command, registered through the `doit.COMMAND` entry point."""

    exit_codes = ((0, "stopped"), (3, "cannot serve: a busy port, no token beyond loopback, a bad option"))

    name = "serve"
    doc_purpose = "serve the bakes over HTTP: Baker's API, Spinnaker's bakery API and a page"
    doc_usage = ""
    doc_description = f"POSTs need the token ({TOKEN_VARIABLE} or --token-file) when one is set."
    cmd_options = (
        {"name": "host", "long": "host", "type": str, "default": "127.0.0.1",
         "help": "address to listen on (default 127.0.0.1; any other needs a token)"},
        {"name": "port", "long": "port", "type": int, "default": 8080, "help": "port (default 8080)"},
        {"name": "token_file", "long": "token-file", "type": str, "default": "",
         "help": f"a file holding the token (else {TOKEN_VARIABLE})"},
        {"name": "parallel", "long": "parallel", "type": int, "default": 2,
         "help": "how many bakes run at once; more wait, queued (default 2)"},
        {"name": "allow_host", "long": "allow-host", "type": str, "default": "",
         "help": "names (comma-separated) the server answers to besides localhost and IP addresses"},
    )

    def _execute(self, host: str, port: int, token_file: str, parallel: int, allow_host: str,
                 pos_args: list[str]) -> int:
        if pos_args:
            raise InvalidCommand(f"doit serve takes no arguments, not {' '.join(pos_args)}")
        if not 1 <= port <= 65535:
            raise InvalidCommand(f"--port is a port number from 1 to 65535, not {port}")
        from ..serve.guard import MaskToken, token_problem  # starlette: only `doit serve` needs it

        token = read_token(token_file)
        problem = None if token is None else token_problem(token)
        if problem is not None:
            raise InvalidCommand(f"the server's token cannot be used: {problem}")
        allowed = tuple(name.strip() for name in allow_host.split(",") if name.strip())
        if not is_loopback(host) and token is None:
            raise InvalidCommand(f"refusing to serve on {host} without a token: set {TOKEN_VARIABLE} or --token-file")
        if not 1 <= parallel <= 64:
            raise InvalidCommand(f"--parallel is from 1 to 64, not {parallel}")
        import uvicorn  # only `doit serve` needs the server

        from ..serve import views
        from ..serve.app import create_app
        from ..serve.runs import Runner

        project = planner_from_tasks(self.task_list).project
        listening = listen(host, port)  # before saying so: a busy port is one line, not a log
        runner = Runner(project.root, project.state_dir, lambda name: views.outcome(project.root, name), parallel)
        sys.stderr.write(f"bakehouse: serving {project.root} on http://{host}:{port}/"
                         + (" (POSTs need the token)" if token else "") + "\n")
        config = uvicorn.Config(create_app(project.root, runner, token, (*allowed, host)), host=host, port=port,
                                log_level="info", timeout_graceful_shutdown=5)
        logging.getLogger("uvicorn.access").addFilter(MaskToken())  # after uvicorn set up its logging
        uvicorn.Server(config).run(sockets=[listening])
        return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket bound and listening on host:port, as uvicorn would make it; one line if not."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        listening = socket.socket(family, socket.SOCK_STREAM)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind((host, port))
        listening.listen(2048)
    except OSError as error:
        raise InvalidCommand(f"cannot listen on {host}:{port}: {error.strerror or error}") from None
    listening.set_inheritable(True)
    return listening
