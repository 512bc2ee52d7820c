"""Notifications to SNS, against moto's SNS and SQS (moto stands in for AWS: no AWS account
here): a topic with a queue subscribed, as a team wires one to a chat or a pager; what
bakehouse publishes is read back from the queue."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_doit


def client(env: dict[str, str], service: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client(service, region_name="us-east-1", endpoint_url=env["AWS_ENDPOINT_URL_EC2"],
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def test_a_promotion_is_published_to_an_sns_topic(aws_repo: Path, aws_env: dict[str, str]) -> None:
    env = {**aws_env, "AWS_ENDPOINT_URL_SNS": aws_env["AWS_ENDPOINT_URL_EC2"], "BAKEHOUSE_USER": "ci"}
    sns, sqs = client(env, "sns"), client(env, "sqs")
    topic = sns.create_topic(Name="bakes")["TopicArn"]
    queue = sqs.create_queue(QueueName="bakes")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    (aws_repo / "bakehouse.toml").write_text(f'[notify]\nsns = ["{topic}"]\nevents = ["promote", "bake.succeeded"]\n')

    run_doit(aws_repo, "bake:aws-base", env=env, check=True)
    promoted = run_doit(aws_repo, "promote", "aws-base", "stable", env=env, check=True)
    assert "WARNING" not in promoted.output, promoted.output
    messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
    bodies = {body["event"]: body for body in (json.loads(json.loads(message["Body"])["Message"]) for message in messages)}
    assert sorted(bodies) == ["bake.succeeded", "promote"], bodies  # a queue need not keep their order
    promote, baked = bodies["promote"], bodies["bake.succeeded"]
    assert promote["bake"] == "aws-base" and promote["channel"] == "stable" and promote["by"] == "ci"
    assert promote["image"] == baked["images"][0]["image"]
    assert set(baked["images"][0]["locations"]) == {"us-east-1", "us-west-2"}

    (aws_repo / "bakehouse.toml").write_text(f'[notify]\nsns = ["{topic}-gone"]\n')  # a topic that is not there
    rolled = run_doit(aws_repo, "promote", "aws-base", "candidate", env=env)
    assert rolled.returncode == 0
    assert f"WARNING: notification promote to {topic}-gone failed after 3 attempts: " in rolled.output, rolled.output
