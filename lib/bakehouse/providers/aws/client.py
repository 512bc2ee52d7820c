"""The one module that talks to AWS (and the only one importing boto3): the EC2 client that
the AWS provider's registry and bake step share.

Credentials come from the standard chain (environment, AWS_PROFILE and profiles, instance
role); endpoints from the standard SDK variables AWS_ENDPOINT_URL_EC2 / AWS_ENDPOINT_URL,
which boto3 reads itself and packer gets as `custom_endpoint_ec2`. Every call has its own
retry budget (budget.py), set in boto3's Config rather than by AWS_MAX_ATTEMPTS: botocore's
standard mode, which retries throttling, 5xx answers, RequestExpired and dropped connections
with exponential back-off and jitter. (Adaptive mode adds a client-side rate limiter that
botocore calls experimental; a bake makes few calls, so it would only slow those that follow
a throttle.) Every failure becomes one line saying what to do; no credential is ever logged.

BAKEHOUSE_AWS_CALL_LOG=<file> appends one line per API call (each page counts), e.g.
`ec2 DescribeImages us-east-1 {"Filters":[...],"Owners":["self"]}`, so tests and benchmarks
can count the calls of a `doit` run.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.parse
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, Callable

import boto3
import botocore.exceptions
import botocore.parsers
from botocore.config import Config

from ...errors import ProviderError
from .budget import budget as _budget

RETRY_MODE = "standard"
CALL_LOG_VARIABLE = "BAKEHOUSE_AWS_CALL_LOG"
ENDPOINT_VARIABLES = ("AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL")


class AwsError(ProviderError):
    """AWS cannot be reached, finds no credentials, or rejects a request."""


def ec2_endpoint() -> str | None:
    """The EC2 endpoint boto3 uses when one is set (an emulator, a VPC endpoint), for packer."""
    for variable in ENDPOINT_VARIABLES:
        url = os.environ.get(variable)
        if url:
            parts = urllib.parse.urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc or any(c.isspace() for c in url):
                raise AwsError(f"{variable}={url!r} is not a URL such as http://127.0.0.1:5000 or https://ec2.example.com")
            return url
    return None


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
            ec2_endpoint()  # a malformed endpoint is one line here, not boto3's ValueError
            client = self._session.client("ec2", region_name=region, config=self._config())
            say_retries(client)
            if os.environ.get(CALL_LOG_VARIABLE):
                client.meta.events.register("before-parameter-build.ec2", _log_call)
            self._clients[region] = client
        return self._clients[region]

    def _config(self) -> Config:
        limits = _budget()
        return Config(
            retries={"mode": RETRY_MODE, "total_max_attempts": limits.max_attempts},
            connect_timeout=limits.connect_timeout,
            read_timeout=limits.read_timeout,
        )

    def describe_images(self, region: str, missing_ok: bool = False, **request: Any) -> list[dict[str, Any]]:
        """Every image matching `request` in `region`, all pages; with `missing_ok`, an
        image id AWS does not know (yet) is no error, only no image."""
        images: list[dict[str, Any]] = []
        try:
            with _one_line_errors(region, "DescribeImages"):
                for page in self.client(region).get_paginator("describe_images").paginate(**request):
                    images.extend(page.get("Images", []))
        except AwsError as error:
            if missing_ok and ": InvalidAMIID." in str(error):
                return []
            raise
        return images

    def paginate(self, region: str, operation: str, key: str, service: str = "ec2", **request: Any) -> list[dict[str, Any]]:
        """Every item under `key` of every page of `operation` (EC2, or Auto Scaling)."""
        items: list[dict[str, Any]] = []
        client = self.client(region) if service == "ec2" else self._other(service, region)
        call = "".join(word.title() for word in operation.split("_"))
        with _one_line_errors(region, call):
            for page in client.get_paginator(operation).paginate(**request):
                items.extend(page.get(key, []))
        return items

    def call(self, region: str, operation: str, missing_ok: tuple[str, ...] = (), **request: Any) -> dict[str, Any]:
        """One EC2 call; an error whose code is in `missing_ok` (already gone) is no error."""
        call = "".join(word.title() for word in operation.split("_"))
        try:
            with _one_line_errors(region, call):
                return dict(getattr(self.client(region), operation)(**request))
        except AwsError as error:
            if any(f": {code}:" in str(error) for code in missing_ok):
                return {}
            raise

    def service_call(self, service: str, region: str, operation: str, missing_ok: tuple[str, ...] = (),
                     **request: Any) -> dict[str, Any]:
        """One call of another service (SSM); an error whose code is in `missing_ok` is none."""
        call = "".join(word.title() for word in operation.split("_"))
        try:
            with _one_line_errors(region, f"{service.upper()} {call}"):
                return dict(getattr(self._other(service, region), operation)(**request))
        except AwsError as error:
            if any(f": {code}:" in str(error) for code in missing_ok):
                return {}
            raise

    def _other(self, service: str, region: str) -> Any:
        """A client of another service in `region` (its endpoint from AWS_ENDPOINT_URL_<SERVICE>
        or AWS_ENDPOINT_URL, which boto3 reads itself), with the same retries and timeouts."""
        name = f"{service}:{region}"
        if name not in self._clients:
            self.client(region)  # the session, and the endpoint check
            self._clients[name] = self._session.client(service, region_name=region, config=self._config())
            say_retries(self._clients[name])
        return self._clients[name]

    def copy_image(self, region: str, source_region: str, source: dict[str, Any], wait_seconds: int,
                   poll_seconds: int, encryption: dict[str, Any] | None = None) -> str:
        """Copy the AMI `source` (as DescribeImages gave it) from `source_region` into
        `region` under the same name (encrypted as `encryption` says: {"Encrypted": True,
        "KmsKeyId": ...}, keys being regional), wait until the copy is available (at most
        `wait_seconds`), and give it and its snapshots the source's tags. Returns its id."""
        copy = self.call(region, "copy_image", SourceRegion=source_region, SourceImageId=source["ImageId"],
                         Name=source["Name"], Description=source.get("Description") or "",
                         **(encryption or {}))["ImageId"]
        deadline = time.monotonic() + wait_seconds
        while True:
            found = self.describe_images(region, missing_ok=True, ImageIds=[copy])
            state = found[0].get("State") if found else None
            if state == "available":
                break
            if state == "failed" or time.monotonic() > deadline:
                raise AwsError(f"AWS CopyImage to {region}: the copy {copy} of {source['ImageId']} is "
                               f"{state or 'not listed'} after {wait_seconds}s (BAKEHOUSE_AWS_WAIT_SECONDS)")
            time.sleep(poll_seconds)
        tags = {tag["Key"]: tag["Value"] for tag in source.get("Tags") or [] if not tag["Key"].startswith("aws:")}
        snapshots = [(m.get("Ebs") or {}).get("SnapshotId") for m in found[0].get("BlockDeviceMappings") or []]
        self.create_tags(region, [copy, *filter(None, snapshots)], tags)
        return str(copy)

    def set_launch_permissions(self, region: str, ami: str, wanted: list[dict[str, str]]) -> None:
        """Make the AMI's launch permissions exactly `wanted` (EC2 LaunchPermission items)."""
        found = self.call(region, "describe_image_attribute", ImageId=ami, Attribute="launchPermission")
        have = [dict(item) for item in found.get("LaunchPermissions") or []]
        add = [item for item in wanted if item not in have]
        remove = [item for item in have if item not in wanted]
        if add or remove:
            self.call(region, "modify_image_attribute", ImageId=ami, LaunchPermission={"Add": add, "Remove": remove})

    def set_snapshot_users(self, region: str, snapshot: str, accounts: list[str]) -> None:
        """Make the accounts that may create volumes from the snapshot exactly `accounts`."""
        found = self.call(region, "describe_snapshot_attribute", SnapshotId=snapshot, Attribute="createVolumePermission")
        have = {item.get("UserId") for item in found.get("CreateVolumePermissions") or [] if item.get("UserId")}
        add, remove = sorted(set(accounts) - have), sorted(have - set(accounts))
        for operation, accounts_now in (("add", add), ("remove", remove)):
            if accounts_now:  # the OperationType form: every EC2 endpoint, emulators included, takes it
                self.call(region, "modify_snapshot_attribute", SnapshotId=snapshot, Attribute="createVolumePermission",
                          OperationType=operation, UserIds=accounts_now)

    def create_tags(self, region: str, resources: list[str], tags: dict[str, str]) -> None:
        with _one_line_errors(region, "CreateTags"):
            self.client(region).create_tags(
                Resources=resources, Tags=[{"Key": key, "Value": value} for key, value in tags.items()]
            )

    def delete_tags(self, region: str, resources: list[str], keys: list[str]) -> None:
        with _one_line_errors(region, "DeleteTags"):
            self.client(region).delete_tags(Resources=resources, Tags=[{"Key": key} for key in keys])


def sns_publisher() -> Callable[[str, str, str], None]:
    """SNS's Publish for notifications (notify.py): (topic ARN, subject, message), in the
    topic's region, with the retries and timeouts of every other call; AwsError, one line."""
    ec2 = Ec2()

    def publish(topic: str, subject: str, message: str) -> None:
        ec2.service_call("sns", topic.split(":")[3], "publish", TopicArn=topic, Subject=subject, Message=message)

    return publish


class S3:
    """The S3 calls of shared state (shared.py): conditional writes for leases, objects for
    logs. Its endpoint comes from AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (boto3 reads them);
    with one set (an emulator, a gateway), buckets are addressed by path."""

    CONFLICTS = ("PreconditionFailed", "ConditionalRequestConflict", "412", "409")

    def __init__(self, region: str, session_factory: Callable[[], Any] = boto3.session.Session) -> None:
        self.region = region
        self._session_factory = session_factory
        self._client: Any = None

    def client(self) -> Any:
        if self._client is None:
            limits = _budget()
            custom = any(os.environ.get(name) for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"))
            config = Config(
                retries={"mode": RETRY_MODE, "total_max_attempts": limits.max_attempts},
                connect_timeout=limits.connect_timeout, read_timeout=limits.read_timeout,
                s3={"addressing_style": "path"} if custom else None,
            )
            self._client = self._session_factory().client("s3", region_name=self.region, config=config)
            say_retries(self._client)
        return self._client

    def put(self, bucket: str, key: str, body: bytes, if_absent: bool = False, if_match: str | None = None) -> str | None:
        """Write the object; with a condition, None when it does not hold (another writer
        came first). Returns the new ETag."""
        conditions: dict[str, str] = {"IfNoneMatch": "*"} if if_absent else {"IfMatch": if_match} if if_match else {}
        try:
            with _one_line_errors(self.region, "S3 PutObject"):
                return str(self.client().put_object(Bucket=bucket, Key=key, Body=body, **conditions)["ETag"])
        except AwsError as error:
            if conditions and any(f": {code}:" in str(error) for code in self.CONFLICTS):
                return None
            raise

    def get(self, bucket: str, key: str) -> tuple[bytes, str, datetime, datetime] | None:
        """The object's body, ETag, LastModified and the server's time of answering (its
        Date header: leases are judged by S3's clock, never by a runner's); None when absent."""
        try:
            with _one_line_errors(self.region, "S3 GetObject"):
                answer = self.client().get_object(Bucket=bucket, Key=key)
        except AwsError as error:
            if ": NoSuchKey:" in str(error) or ": 404:" in str(error):
                return None
            raise
        date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        server_now = parsedate_to_datetime(date) if date else datetime.now(UTC)
        return answer["Body"].read(), str(answer["ETag"]), answer["LastModified"], server_now

    def exists(self, bucket: str, key: str) -> bool:
        try:
            with _one_line_errors(self.region, "S3 HeadObject"):
                self.client().head_object(Bucket=bucket, Key=key)
            return True
        except AwsError as error:
            if re.search(r": (404|NoSuchKey|Not Found):", str(error)):
                return False
            raise

    def delete(self, bucket: str, key: str, if_match: str | None = None) -> bool:
        """Delete the object; with `if_match`, only if it is still that version."""
        try:
            with _one_line_errors(self.region, "S3 DeleteObject"):
                self.client().delete_object(Bucket=bucket, Key=key, **({"IfMatch": if_match} if if_match else {}))
            return True
        except AwsError as error:
            if any(f": {code}:" in str(error) for code in (*self.CONFLICTS, "NoSuchKey", "404")):
                return False
            raise

    def keys(self, bucket: str, prefix: str) -> list[str]:
        """The keys of every object under `prefix`, all pages."""
        found: list[str] = []
        with _one_line_errors(self.region, "S3 ListObjectsV2"):
            for page in self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                found += [str(item["Key"]) for item in page.get("Contents", [])]
        return found

    def check_bucket(self, bucket: str) -> None:
        with _one_line_errors(self.region, f"S3 HeadBucket {bucket}"):
            self.client().head_bucket(Bucket=bucket)


def say_retries(client: Any, say: Callable[[str], None] | None = None) -> None:
    """Never wait in silence: each failed attempt that boto3 will try again is one line on
    stderr (`waiting for AWS: EC2 DescribeImages in us-east-1 at http://...: cannot connect;
    attempt 1 of 15, trying again`), so an unreachable endpoint or throttling shows as it
    happens instead of as a long pause. Observes only: boto3's retry handler decides."""
    limit = _budget().max_attempts
    service = client.meta.service_model.service_name.upper()
    tell = say or (lambda line: (sys.stderr.write(line + "\n"), sys.stderr.flush()))

    def observe(attempts: int = 0, caught_exception: Any = None, response: Any = None, operation: Any = None,
                **_: Any) -> None:
        if attempts >= limit:
            return  # the last attempt: its error is the caller's to report
        status = (response[0].status_code if response and response[0] is not None else None)
        if caught_exception is not None:
            why = type(caught_exception).__name__ if not str(caught_exception) else str(caught_exception).split(":")[0]
        elif status is not None and (status >= 500 or status == 429):
            why = f"HTTP {status}"
        else:
            return
        name = getattr(operation, "name", "a call")
        tell(f"waiting for AWS: {service} {name} in {client.meta.region_name} at {client.meta.endpoint_url}: "
             f"{why}; attempt {attempts} of {limit}, trying again")

    client.meta.events.register_first(f"needs-retry.{client.meta.service_model.service_id.hyphenize()}", observe)


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
        if isinstance(error, (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError)):
            url = error.kwargs.get("endpoint_url", "the EC2 endpoint")
            raise AwsError(
                f"{self.where}: {url} did not answer in time, on every attempt "
                "(BAKEHOUSE_AWS_CONNECT_TIMEOUT, BAKEHOUSE_AWS_READ_TIMEOUT and BAKEHOUSE_AWS_MAX_ATTEMPTS set the bounds)"
            ) from None
        if isinstance(error, botocore.exceptions.EndpointConnectionError):
            endpoint, url = ec2_endpoint(), str(error.kwargs.get("endpoint_url", ""))
            hint = f" (AWS_ENDPOINT_URL_EC2/AWS_ENDPOINT_URL is {endpoint}: is it running?)" if endpoint and url.startswith(endpoint) else ""
            if endpoint and not hint:
                hint = " (an emulator serves other services too: set AWS_ENDPOINT_URL to it)"
            raise AwsError(f"{self.where}: cannot reach {error.kwargs.get('endpoint_url', 'EC2')}{hint}") from None
        if isinstance(error, botocore.exceptions.ClientError):
            details = error.response.get("Error", {})
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            message = _one_line(str(details.get("Message") or error))
            raise AwsError(f"{self.where}: {details.get('Code') or status or 'error'}: {message}") from None
        if isinstance(error, botocore.parsers.ResponseParserError):
            raise AwsError(
                f"{self.where}: {ec2_endpoint() or 'EC2'} answered with something that is not an AWS "
                f"response (a proxy's or a web server's error page?): {_one_line(str(error), 200)}"
            ) from None
        if isinstance(error, botocore.exceptions.BotoCoreError):
            raise AwsError(f"{self.where}: {_one_line(str(error))}") from None


def _one_line(text: str, limit: int = 300) -> str:
    """An answer's text as one short line (an endpoint may answer with a whole HTML page)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[:limit] + "..."


def require_imdsv2(source_name: str, instance_id: str) -> None:
    """Require IMDSv2 tokens on a running build instance (packer 1.6.6 cannot): run by the
    template's first step, with packer's `${source.name}` (a region, as bakehouse names
    sources) and `${build.ID}` (the instance)."""
    region = source_name.replace("_", "-")
    Ec2().call(region, "modify_instance_metadata_options", InstanceId=instance_id, HttpTokens="required",
               HttpEndpoint="enabled", HttpPutResponseHopLimit=1)
    print(f"bakehouse: {instance_id} in {region} requires IMDSv2 tokens")


if __name__ == "__main__":
    import sys

    if len(sys.argv) != 4 or sys.argv[1] != "require-imdsv2":
        sys.exit("usage: python -m bakehouse.providers.aws.client require-imdsv2 SOURCE_NAME INSTANCE_ID")
    try:
        require_imdsv2(sys.argv[2], sys.argv[3])
    except AwsError as error:
        sys.exit(f"bakehouse: {error}")
