"""The one module that talks to AWS (and the only one importing boto3).

Credentials come from the standard chain (environment, AWS_PROFILE and profiles, instance
role); endpoints from the standard SDK variables AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL,
which boto3 reads itself and packer gets as `custom_endpoint_ec2`. Throttling is retried by
boto3's adaptive mode. Every failure becomes one line saying what to do; no credential is
ever logged.

BAKEHOUSE_AWS_CALL_LOG=<file> appends one line per API call (each page counts), e.g.
`ec2 DescribeImages us-east-1 {"Filters":[...],"Owners":["self"]}`, so tests and benchmarks
can count the calls of a `doit` run.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import boto3
import botocore.exceptions
from botocore.config import Config

from .errors import AwsError

# Adaptive mode waits out throttling; AWS_MAX_ATTEMPTS (default 3) still applies.
RETRIES = {"mode": "adaptive"}
CALL_LOG_VARIABLE = "BAKEHOUSE_AWS_CALL_LOG"


def ec2_endpoint() -> str | None:
    """The EC2 endpoint boto3 uses when one is set (an emulator, a VPC endpoint), for packer."""
    return os.environ.get("AWS_ENDPOINT_URL_EC2") or os.environ.get("AWS_ENDPOINT_URL") or None


class Ec2:
    """EC2 clients per region, made on first use, sharing one boto3 session."""

    def __init__(self, session_factory: Callable[[], Any] = boto3.session.Session) -> None:
        self._session_factory = session_factory
        self._session: Any = None
        self._clients: dict[str, Any] = {}

    def client(self, region: str) -> Any:
        if region not in self._clients:
            if self._session is None:
                self._session = self._session_factory()
            client = self._session.client("ec2", region_name=region, config=Config(retries=RETRIES))
            if os.environ.get(CALL_LOG_VARIABLE):
                client.meta.events.register("before-parameter-build.ec2", _log_call)
            self._clients[region] = client
        return self._clients[region]

    def describe_images(self, region: str, **request: Any) -> list[dict[str, Any]]:
        """Every image matching `request` in `region`, all pages."""
        images: list[dict[str, Any]] = []
        with _one_line_errors(region, "DescribeImages"):
            for page in self.client(region).get_paginator("describe_images").paginate(**request):
                images.extend(page.get("Images", []))
        return images


def _log_call(params: Any, model: Any, context: Any, **_: Any) -> None:
    """One line per call: service, operation, region and the request (which holds no secret)."""
    region = context.get("client_region", "") if isinstance(context, dict) else ""
    request = json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)
    with open(os.environ[CALL_LOG_VARIABLE], "a", encoding="utf-8") as log:
        log.write(f"ec2 {model.name} {region} {request}\n")


class _one_line_errors:
    """botocore's exceptions, as one line that names the region, the call and the remedy."""

    def __init__(self, region: str, call: str) -> None:
        self.where = f"AWS {call} in {region}"

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        if error is None:
            return
        if isinstance(error, botocore.exceptions.NoCredentialsError):
            raise AwsError(
                f"{self.where}: no AWS credentials found; set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY, or run where an instance role applies"
            ) from None
        if isinstance(error, botocore.exceptions.EndpointConnectionError):
            endpoint = ec2_endpoint()
            hint = f" (AWS_ENDPOINT_URL_EC2/AWS_ENDPOINT_URL is {endpoint}: is it running?)" if endpoint else ""
            raise AwsError(f"{self.where}: cannot reach {error.kwargs.get('endpoint_url', 'EC2')}{hint}") from None
        if isinstance(error, botocore.exceptions.ClientError):
            details = error.response.get("Error", {})
            raise AwsError(f"{self.where}: {details.get('Code', 'error')}: {details.get('Message', error)}") from None
        if isinstance(error, botocore.exceptions.BotoCoreError):
            raise AwsError(f"{self.where}: {error}") from None
