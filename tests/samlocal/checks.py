"""What each sample event must do through `sam local invoke`, and how that is read back from
the stand-ins."""
import json
from dataclasses import dataclass, field
from typing import Callable

import boto3


class World:
    """The stand-ins as the checks read them."""

    def __init__(self, endpoint: str, seeded: dict):
        kw = dict(endpoint_url=endpoint, region_name="eu-west-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.rds = boto3.client("rds", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.r53 = boto3.client("route53", **kw)
        self.seeded = seeded
        self.kube = seeded["kube_url"]

    def snapshot(self) -> dict:
        import urllib.request
        tasks = self.rds.describe_export_tasks()["ExportTasks"]
        records = self.r53.list_resource_record_sets(HostedZoneId=self.seeded["zone"])["ResourceRecordSets"]
        images = {}
        for ns in ("shop-dev", "shop-prod"):
            with urllib.request.urlopen(f"{self.kube}/apis/apps/v1/namespaces/{ns}/deployments") as r:
                for d in json.load(r)["items"]:
                    c = d["spec"]["template"]["spec"]["containers"][0]
                    images[f"{ns}/{d['metadata']['name']}"] = c["image"]
        return {
            "exports": sorted(t["ExportTaskIdentifier"] for t in tasks),
            "records": sorted(f"{r['Type']} {r['Name']}" for r in records),
            "images": images,
            "mail": self.drain(self.seeded["queue"]),
            "failed": self.drain(self.seeded["failed"]),
        }

    def drain(self, queue: str) -> list:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            msgs = got.get("Messages", [])
            if not msgs:
                return out
            for m in msgs:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


@dataclass
class Expect:
    says: str
    error: str | None = None
    check: Callable | None = None


EXPECT: dict[str, Expect] = {}


def verify(expect: Expect, answer, world: World, before: dict) -> str | None:
    after = world.snapshot()
    print("   ", json.dumps(answer)[:300])
    print("    exports", len(after["exports"]) - len(before["exports"]), "records", set(after["records"]) - set(before["records"]),
          "images", {k: v for k, v in after["images"].items() if before["images"].get(k) != v},
          "mail", [m.get("Subject") for m in after["mail"]], "failed", len(after["failed"]))
    return None
