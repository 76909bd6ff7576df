"""A baseline, not part of Bridgekeeper: what a team would otherwise write, a Python/boto3 Lambda
making the same AWS and Kubernetes calls as the Rust function does for the bench's first sample.

    python bench/peer/handler.py <function>

It talks to the Lambda Runtime API itself (next → handler → response), as the AWS Python runtime
does, so `make bench` can time it spawn → response next to the Rust bootstrap. Clients are built at
init, as a Lambda handler module would. Its figures flatter Python slightly: the real runtime also
loads its own bootstrap (awslambdaric) before the handler module.
"""
import json
import os
import sys
import urllib.request

import boto3

FUNCTION = sys.argv[1]
API = f"http://{os.environ['AWS_LAMBDA_RUNTIME_API']}/2018-06-01/runtime/invocation"
TABLE = os.environ["IDEMPOTENCY_TABLE"]
TOPIC = os.environ["ALERTS_TOPIC_ARN"]
CLIENTS = {
    "snapshot-export": ["dynamodb", "sns", "sqs", "rds"],
    "dns-sync": ["dynamodb", "sns", "sqs", "route53"],
    "image-rollout": ["dynamodb", "sns", "sqs", "ecr"],
    "scaling-alerts": ["dynamodb", "sns", "sqs", "autoscaling", "ec2"],
}[FUNCTION]
# Lambda sets AWS_DEFAULT_REGION as well; the stand-in environment has only AWS_REGION.
aws = {name: boto3.client(name, region_name=os.environ["AWS_REGION"]) for name in CLIENTS}
CLUSTERS = dict(c.split("=", 1) for c in os.environ.get("CLUSTERS", "").split(",") if c)
RULE = json.loads(os.environ.get("ROLLOUT_RULES", "[{}]"))[0]


def kube(method: str, url: str, body=None, content_type="application/json"):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"content-type": content_type})
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


def claim(key):
    aws["dynamodb"].put_item(TableName=TABLE, Item={"id": {"S": f"{FUNCTION}#{key}"}, "status": {"S": "in-progress"}},
                             ConditionExpression="attribute_not_exists(id) OR #s <> :done",
                             ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues={":done": {"S": "completed"}})


def done(key):
    aws["dynamodb"].update_item(TableName=TABLE, Key={"id": {"S": f"{FUNCTION}#{key}"}},
                                UpdateExpression="SET #s = :d", ExpressionAttributeNames={"#s": "status"},
                                ExpressionAttributeValues={":d": {"S": "completed"}})


def remembered(key):
    return aws["dynamodb"].get_item(TableName=TABLE, Key={"id": {"S": f"{FUNCTION}#{key}"}}).get("Item")


def tagged(tags):
    return any(t["Key"] == "bridgekeeper:export" and t["Value"] == "true" for t in tags)


def snapshot_export(event):
    claim(event["id"])
    rds = aws["rds"]
    instances = [i for i in rds.describe_db_instances()["DBInstances"] if tagged(i.get("TagList", []))]
    clusters = [c for c in rds.describe_db_clusters()["DBClusters"] if tagged(c.get("TagList", []))]
    exports = rds.describe_export_tasks()["ExportTasks"]
    newest = []
    for i in instances:
        snaps = rds.describe_db_snapshots(DBInstanceIdentifier=i["DBInstanceIdentifier"], SnapshotType="automated")["DBSnapshots"]
        newest += sorted(snaps, key=lambda x: x.get("SnapshotCreateTime", ""))[-1:]
    for c in clusters:
        snaps = rds.describe_db_cluster_snapshots(DBClusterIdentifier=c["DBClusterIdentifier"], SnapshotType="automated")["DBClusterSnapshots"]
        newest += sorted(snaps, key=lambda x: x.get("SnapshotCreateTime", ""))[-1:]
    remembered("report")
    done(event["id"])
    return {"sources": len(instances) + len(clusters), "snapshots": len(newest), "exports": len(exports)}


def dns_sync(event):
    claim(event["id"])
    ingresses = [kube("GET", f"{url}/apis/networking.k8s.io/v1/ingresses")["items"] for url in CLUSTERS.values()]
    services = [kube("GET", f"{url}/api/v1/services")["items"] for url in CLUSTERS.values()]
    wanted = {r["host"] for items in ingresses for i in items for r in i["spec"].get("rules", []) if r.get("host")}
    zones = [z for z in aws["route53"].list_hosted_zones()["HostedZones"] if z["Id"].split("/")[-1] in os.environ["ZONE_IDS"].split(",")]
    records = [r for z in zones for r in aws["route53"].list_resource_record_sets(HostedZoneId=z["Id"])["ResourceRecordSets"]]
    have = {r["Name"].rstrip(".") for r in records}
    remembered("report")
    done(event["id"])
    return {"wanted": sorted(wanted), "missing": sorted(wanted - have), "services": sum(map(len, services))}


def image_rollout(event):
    claim(event["id"])
    d = event["detail"]
    images = aws["ecr"].describe_images(registryId=event["account"], repositoryName=d["repository-name"],
                                        imageIds=[{"imageTag": d["image-tag"]}])["imageDetails"]
    if not images or images[0]["imageDigest"] != d["image-digest"]:
        done(event["id"])
        return {"ignored": "superseded"}
    url, namespace = CLUSTERS[RULE["clusters"][0]], RULE["namespaces"][0]
    workloads = [kube("GET", f"{url}/apis/{kind}")["items"] for kind in (
        f"apps/v1/namespaces/{namespace}/deployments", f"apps/v1/namespaces/{namespace}/statefulsets",
        f"apps/v1/namespaces/{namespace}/daemonsets", f"batch/v1/namespaces/{namespace}/cronjobs")]
    image = f"{event['account']}.dkr.ecr.{event['region']}.amazonaws.com/{d['repository-name']}"
    rolled = []
    for dep in workloads[0]:
        containers = dep["spec"]["template"]["spec"]["containers"]
        if any(c["image"] == f"{image}:{d['image-tag']}" or c["image"].startswith(f"{image}@") for c in containers):
            patch = {"spec": {"template": {"spec": {"containers": [
                {"name": c["name"], "image": f"{image}@{d['image-digest']}"} for c in containers]}}}}
            kube("PATCH", f"{url}/apis/apps/v1/namespaces/{namespace}/deployments/{dep['metadata']['name']}", patch,
                 "application/strategic-merge-patch+json")
            rolled.append(dep["metadata"]["name"])
    aws["sns"].publish(TopicArn=TOPIC, Subject=f"[local] rolled {d['repository-name']}:{d['image-tag']}", Message=json.dumps(rolled))
    done(event["id"])
    return {"rolled": rolled}


def scaling_alerts(event):
    bodies = [json.loads(r["body"]) for r in event["Records"]]
    for b in bodies:
        claim(b["id"])
    groups = sorted({b["detail"]["AutoScalingGroupName"] for b in bodies if "AutoScalingGroupName" in b["detail"]})
    if groups:
        aws["autoscaling"].describe_auto_scaling_groups(AutoScalingGroupNames=groups)
    launches = [b for b in bodies if b["source"] == "aws.autoscaling"]
    alarms = {b["detail"]["alarmName"]: b for b in bodies if b["source"] == "aws.cloudwatch"}
    if launches:
        aws["sns"].publish(TopicArn=TOPIC, Subject=f"[local] {len(launches)} nodes launched", Message=json.dumps(launches))
    for name, b in alarms.items():
        remembered(f"alarm#{name}")
        aws["sns"].publish(TopicArn=TOPIC, Subject=f"[local] {name}: {b['detail']['state']['value']}"[:100], Message=json.dumps(b["detail"]))
    for b in bodies:
        done(b["id"])
    return {"batchItemFailures": []}


HANDLERS = {"snapshot-export": snapshot_export, "dns-sync": dns_sync, "image-rollout": image_rollout,
            "scaling-alerts": scaling_alerts}


def main() -> None:
    handler = HANDLERS[FUNCTION]
    while True:
        with urllib.request.urlopen(f"{API}/next") as r:
            request_id = r.headers["Lambda-Runtime-Aws-Request-Id"]
            event = json.loads(r.read())
        try:
            body, path = json.dumps(handler(event)).encode(), f"{API}/{request_id}/response"
        except Exception as e:  # the runtime reports any error the handler raises
            body, path = json.dumps({"errorType": type(e).__name__, "errorMessage": str(e)}).encode(), f"{API}/{request_id}/error"
        urllib.request.urlopen(urllib.request.Request(path, data=body, method="POST")).read()


if __name__ == "__main__":
    main()
