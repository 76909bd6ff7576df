"""`make standins`: runs moto and kmock on fixed loopback ports for trying functions by hand,
seeds them with what the sample events refer to, and writes `.local.env` for cargo lambda.

    make standins                                   # terminal 1 (Ctrl-C stops the stand-ins)
    cargo lambda watch --env-file .local.env        # terminal 2
    cargo lambda invoke snapshot-export --data-file events/snapshot-export/schedule.json
"""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
MOTO_PORT = int(os.environ.get("MOTO_PORT", "5555"))
KMOCK_PORT = int(os.environ.get("KMOCK_PORT", "5556"))
REGION = "eu-west-1"
ACCOUNT = "123456789012"


def start(which: str, port: int) -> subprocess.Popen:
    # serve.py runs until its standard input closes: when this script ends, however it ends.
    cmd = [sys.executable, str(ROOT / "tests/standins/serve.py"), which, str(port)]
    return subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_http(port: int) -> None:
    import socket

    for _ in range(300):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    sys.exit(f"nothing answers on 127.0.0.1:{port}")


def seed(endpoint: str) -> dict[str, str]:
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    sns, sqs, rds = boto3.client("sns", **kw), boto3.client("sqs", **kw), boto3.client("rds", **kw)
    topic = sns.create_topic(Name="bridgekeeper-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="bridgekeeper-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    failed = sqs.create_queue(QueueName="bridgekeeper-failed-invocations")["QueueUrl"]
    boto3.client("dynamodb", **kw).create_table(
        TableName="bridgekeeper-idempotency", BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}])
    tag = [{"Key": "bridgekeeper:export", "Value": "true"}]
    for db in ("shop-db", "billing-db"):
        rds.create_db_instance(DBInstanceIdentifier=db, Engine="postgres", DBInstanceClass="db.t4g.micro",
                               AllocatedStorage=20, MasterUsername="admin", MasterUserPassword="local-password", Tags=tag)
    rds.create_db_cluster(DBClusterIdentifier="orders-aurora", Engine="aurora-postgresql",
                          MasterUsername="admin", MasterUserPassword="local-password", Tags=tag)
    r53 = boto3.client("route53", **kw)
    zone = r53.create_hosted_zone(Name="shop.local.example.com", CallerReference="bridgekeeper-local")["HostedZone"]["Id"]
    ec2, elb = boto3.client("ec2", **kw), boto3.client("elbv2", **kw)
    subnets = [x["SubnetId"] for x in ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]]
    lb = elb.create_load_balancer(Name="k8s-shop-web", Subnets=subnets[:2], Type="application")["LoadBalancers"][0]["DNSName"]
    return {"topic": topic, "queue": queue, "failed": failed, "zone": zone.split("/")[-1], "lb": lb}


def seed_kube(url: str, lb: str) -> None:
    import json
    import urllib.request

    image = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/shop/api"
    for ns, name, tag in (("shop-dev", "api", "latest"), ("shop-dev", "worker", "latest"), ("shop-prod", "api", "stable")):
        body = {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": ns, "annotations": {"bridgekeeper.io/rollout": "true"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": f"{image}:{tag}"}]}}},
        }
        req = urllib.request.Request(f"{url}/apis/apps/v1/namespaces/{ns}/deployments", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(req).read()
    ingress = {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "shop", "namespace": "shop-web"},
        "spec": {"rules": [{"host": "api.shop.local.example.com"}, {"host": "shop.local.example.com"}]},
        "status": {"loadBalancer": {"ingress": [{"hostname": lb}]}},
    }
    req = urllib.request.Request(f"{url}/apis/networking.k8s.io/v1/namespaces/shop-web/ingresses", data=json.dumps(ingress).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    urllib.request.urlopen(req).read()


def function_env(seeded: dict, aws_url: str, kube_url: str) -> dict[str, str]:
    """Every function's variables, pointed at the stand-ins (or proxies in front of them)."""
    return {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "ENVIRONMENT": "local",
        "ALERTS_TOPIC_ARN": seeded["topic"],
        "FAILED_QUEUE_URL": seeded["failed"],
        "IDEMPOTENCY_TABLE": "bridgekeeper-idempotency",
        "EXPORT_BUCKET": "bridgekeeper-local-exports",
        "EXPORT_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/bridgekeeper-export",
        "EXPORT_KMS_KEY_ARN": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0b1e5e7f-local",
        "CLUSTERS": f"dev={kube_url},prod={kube_url}",
        "LOCAL_HTTP_CLUSTERS": "true",
        "ROLLOUT_RULES": '[{"repository":"shop/*","tag":"latest","clusters":["dev"],"namespaces":["shop-dev"]},'
                         '{"repository":"shop/*","tag":"stable","clusters":["prod"],"namespaces":["shop-prod"]}]',
        "WATCH_TIMEOUT_SECONDS": "0",
        "ZONE_IDS": seeded["zone"],
        "OWNER_ID": "bridgekeeper-local",
        "HOST_POLICY": "shop-web=shop.local.example.com,shop-web=@shop.local.example.com",
    }


def main() -> None:
    children = [start("moto", MOTO_PORT), start("kmock", KMOCK_PORT)]
    wait_http(MOTO_PORT)
    wait_http(KMOCK_PORT)
    endpoint = f"http://127.0.0.1:{MOTO_PORT}"
    seeded = seed(endpoint)
    kube_url = f"http://127.0.0.1:{KMOCK_PORT}"
    seed_kube(kube_url, seeded["lb"])
    env = function_env(seeded, endpoint, kube_url)
    (ROOT / ".local.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    print(f"moto (AWS):        {endpoint}")
    print(f"kmock (Kubernetes): http://127.0.0.1:{KMOCK_PORT}")
    print(f"seeded: SNS topic {seeded['topic']} (read it via SQS {seeded['queue']}),")
    print(f"        failed-invocations queue {seeded['failed']}, idempotency table bridgekeeper-idempotency")
    print("        RDS instances shop-db, billing-db and Aurora cluster orders-aurora, tagged bridgekeeper:export=true")
    print("        Deployments shop-dev/api, shop-dev/worker (shop/api:latest) and shop-prod/api (shop/api:stable)")
    print(f"        hosted zone shop.local.example.com ({seeded['zone']}), load balancer {seeded['lb']},")
    print("        Ingress shop-web/shop for api.shop.local.example.com and the apex")
    print("wrote .local.env; now: cargo lambda watch --env-file .local.env   (Ctrl-C here stops the stand-ins)", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.stdin.close()
            child.wait(timeout=10)


if __name__ == "__main__":
    main()
