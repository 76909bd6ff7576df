"""`make standins`: runs moto and kmock on fixed ports for trying functions by hand, seeds them
with what the sample events refer to, and writes the functions' variables twice:

    .local.env        cargo lambda watch --env-file .local.env
    .sam-local.json   sam local invoke <LogicalId> -e events/<name>/<file> --env-vars .sam-local.json

    make standins                                   # terminal 1 (Ctrl-C stops the stand-ins)
    cargo lambda watch --env-file .local.env        # terminal 2
    cargo lambda invoke snapshot-export --data-file events/snapshot-export/schedule.json

The stand-ins listen on the Docker bridge's address when the machine has one (SAM's containers
sit on that bridge: SAM 1.170's `--docker-network host` does not move them into the host's
network), else on 127.0.0.1; either way, only this machine reaches them.
"""
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parents[2]
MOTO_PORT = int(os.environ.get("MOTO_PORT", "5555"))
KMOCK_PORT = int(os.environ.get("KMOCK_PORT", "5556"))
REGION = "eu-west-1"
ACCOUNT = "123456789012"
# SAM's names for the functions (template.yaml), by folder.
LOGICAL_IDS = {
    "snapshot-export": "SnapshotExportFunction",
    "scaling-alerts": "ScalingAlertsFunction",
    "image-rollout": "ImageRolloutFunction",
    "dns-sync": "DnsSyncFunction",
    "access-entries": "AccessEntriesFunction",
}


def bridge_address(interface: str = "docker0") -> str | None:
    """The IPv4 address of Docker's default bridge on this machine, if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", interface.encode()))  # SIOCGIFADDR
        except OSError:
            return None
    return socket.inet_ntoa(packed[20:24])


def start(which: str, port: int, host: str) -> tuple[subprocess.Popen, str]:
    """One stand-in, and its URL once it answers. It runs until its standard input closes: when
    the script that started it ends, however it ends."""
    # moto and kmock are in .venv (the SAM CLI's venv, which may run this, has neither).
    python = ROOT / ".venv/bin/python"
    cmd = [str(python if python.exists() else sys.executable), str(ROOT / "tests/standins/serve.py"), which, str(port), host]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = child.stdout.readline().strip()
    if not line.startswith("READY "):
        child.kill()
        sys.exit(f"{which} did not start on {host}:{port}")
    return child, line.removeprefix("READY ")


def stop(children: list[subprocess.Popen]) -> None:
    for child in children:
        child.stdin.close()
        child.wait(timeout=10)


def seed(endpoint: str) -> dict[str, str]:
    kw = dict(endpoint_url=endpoint, region_name=REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    sns, sqs, rds = boto3.client("sns", **kw), boto3.client("sqs", **kw), boto3.client("rds", **kw)
    topic = sns.create_topic(Name="bridgekeeper-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="bridgekeeper-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    failed = sqs.create_queue(QueueName="bridgekeeper-failed-invocations")["QueueUrl"]
    # scaling-alerts' own queue, where it sends itself a node-group update's follow-ups.
    scaling = sqs.create_queue(QueueName="bridgekeeper-scaling-events")["QueueUrl"]
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
    seed_ecr(boto3.client("ecr", **kw))
    return {"topic": topic, "queue": queue, "failed": failed, "scaling": scaling, "zone": zone.split("/")[-1], "lb": lb}


def seed_ecr(ecr) -> None:
    """shop/api:latest and :stable at the digests the sample push events name: image-rollout rolls
    only once ECR confirms the pushed digest is the tag's (moto takes the digest it is given)."""
    ecr.create_repository(repositoryName="shop/api")
    for n, tag in enumerate(("latest", "stable"), start=1):
        event = json.loads((ROOT / f"events/image-rollout/push-{tag}.json").read_text())
        manifest = {
            "schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": "sha256:" + "c" * 64},
            "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
                        "digest": f"sha256:{n:02x}" + "0" * 62}],
        }
        ecr.put_image(repositoryName="shop/api", imageTag=tag, imageManifest=json.dumps(manifest),
                      imageDigest=event["detail"]["image-digest"])


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
        "FOLLOW_UP_QUEUE_URL": seeded["scaling"],
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
        # The role events/access-entries/*.json name, as if it were this stack's dns-sync role.
        "ALLOWED_PRINCIPALS": "arn:aws:iam::111122223333:role/bk-DnsSyncFunctionRole-X",
    }


# What belongs to one function (the rest is the template's Globals, every function's).
FUNCTION_VARS = {
    "SnapshotExportFunction": ("EXPORT_BUCKET", "EXPORT_ROLE_ARN", "EXPORT_KMS_KEY_ARN"),
    "ImageRolloutFunction": ("CLUSTERS", "ROLLOUT_RULES", "WATCH_TIMEOUT_SECONDS"),
    "DnsSyncFunction": ("CLUSTERS", "ZONE_IDS", "OWNER_ID", "HOST_POLICY"),
    "AccessEntriesFunction": ("ALLOWED_PRINCIPALS",),
    "ScalingAlertsFunction": ("FOLLOW_UP_QUEUE_URL",),
}


def sam_env_vars(env: dict[str, str]) -> dict:
    """SAM's --env-vars file: `Parameters` for every function, then each function's own by its
    logical id. SAM passes a function only the variables the template declares for it: the
    credentials are not among them (SAM passes the shell's), and `AWS_ENDPOINT_URL` is not (the
    template declares `LOCAL_ENDPOINT_URL` for that)."""
    skip = {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}
    own = {v for names in FUNCTION_VARS.values() for v in names}
    common = {k: v for k, v in env.items() if k not in skip | own}
    common["LOCAL_ENDPOINT_URL"] = env["AWS_ENDPOINT_URL"]
    # SAM lets the shell's value of a declared variable override the template's: a host whose
    # SSL_CERT_FILE names its own bundle would hand the container a path it does not have.
    common["SSL_CERT_FILE"] = "/etc/pki/tls/certs/ca-bundle.crt"
    return {"Parameters": common} | {
        logical_id: {k: env[k] for k in names} for logical_id, names in FUNCTION_VARS.items()
    }


def up(moto_port: int, kmock_port: int, host: str) -> tuple[list[subprocess.Popen], dict, dict[str, str]]:
    """Both stand-ins started and seeded: the children, what was seeded, every function's variables."""
    moto, endpoint = start("moto", moto_port, host)
    kmock, kube_url = start("kmock", kmock_port, host)
    seeded = seed(endpoint)
    seed_kube(kube_url, seeded["lb"])
    seeded["kube_url"] = kube_url
    return [moto, kmock], seeded, function_env(seeded, endpoint, kube_url)


def main() -> None:
    host = bridge_address() or "127.0.0.1"
    children, seeded, env = up(MOTO_PORT, KMOCK_PORT, host)
    endpoint, kube_url = env["AWS_ENDPOINT_URL"], seeded["kube_url"]
    (ROOT / ".local.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    (ROOT / ".sam-local.json").write_text(json.dumps(sam_env_vars(env), indent=2) + "\n")
    print(f"moto (AWS):        {endpoint}")
    print(f"kmock (Kubernetes): {kube_url}")
    print(f"seeded: SNS topic {seeded['topic']} (read it via SQS {seeded['queue']}),")
    print(f"        failed-invocations queue {seeded['failed']}, idempotency table bridgekeeper-idempotency")
    print("        RDS instances shop-db, billing-db and Aurora cluster orders-aurora, tagged bridgekeeper:export=true")
    print("        Deployments shop-dev/api, shop-dev/worker (shop/api:latest) and shop-prod/api (shop/api:stable)")
    print(f"        hosted zone shop.local.example.com ({seeded['zone']}), load balancer {seeded['lb']},")
    print("        Ingress shop-web/shop for api.shop.local.example.com and the apex")
    print("        ECR shop/api:latest and :stable at the digests of events/image-rollout/push-{latest,stable}.json")
    print("wrote .local.env      (cargo lambda watch --env-file .local.env)")
    print("      .sam-local.json (sam local invoke <LogicalId> -e events/<name>/<file> --env-vars .sam-local.json)")
    print("Ctrl-C here stops the stand-ins.", flush=True)
    try:
        signal.pause()
    except KeyboardInterrupt:
        pass
    finally:
        stop(children)


if __name__ == "__main__":
    main()
