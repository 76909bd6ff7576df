"""What each sample event must do through `sam local invoke`, read back from the stand-ins.

The expectations are for all of events/ in file-name order, on stand-ins seeded as
`make standins` seeds them: a later file sees what the earlier ones did (the second DNS run
changes nothing, a stale alarm change is not sent, the nightly run finds the exports started).
Every effect not listed must not happen: no export, record, image change, mail or failed-queue
record beyond what an expectation names.
"""
import json
import re
import urllib.request
from dataclasses import dataclass, field

import boto3

ZONE = "shop.local.example.com."
PINNED = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/shop/api@"
LATEST = "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd"
STABLE = "sha256:3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b"
SOURCES = {"shop-db", "billing-db", "orders-aurora"}


class World:
    """The stand-ins as the checks read them."""

    def __init__(self, endpoint: str, seeded: dict):
        kw = dict(endpoint_url=endpoint, region_name="eu-west-1",
                  aws_access_key_id="testing", aws_secret_access_key="testing")
        self.rds = boto3.client("rds", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.r53 = boto3.client("route53", **kw)
        self.seeded = seeded

    def snapshot(self) -> dict:
        """What the functions can change; the queues are drained (so each read is what is new)."""
        tasks = self.rds.describe_export_tasks()["ExportTasks"]
        records = self.r53.list_resource_record_sets(HostedZoneId=self.seeded["zone"])["ResourceRecordSets"]
        return {
            "exports": {t["ExportTaskIdentifier"] for t in tasks},
            "records": {f"{r['Type']} {r['Name']}" for r in records},
            "images": self.images(),
            "mail": [m["Subject"] for m in self.drain(self.seeded["queue"])],
            "failed": [m.get("error_type", "") for m in self.drain(self.seeded["failed"])],
            "follow_ups": self.delayed(self.seeded["scaling"]),
        }

    def delayed(self, queue: str) -> int:
        """Messages waiting out their delay: scaling-alerts' follow-ups of node-group updates
        (15 minutes: never delivered during a run, so the count only grows)."""
        attrs = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["ApproximateNumberOfMessagesDelayed"])
        return int(attrs["Attributes"]["ApproximateNumberOfMessagesDelayed"])

    def images(self) -> dict[str, str]:
        out = {}
        for ns in ("shop-dev", "shop-prod"):
            url = f"{self.seeded['kube_url']}/apis/apps/v1/namespaces/{ns}/deployments"
            with urllib.request.urlopen(url) as r:
                for d in json.load(r)["items"]:
                    out[f"{ns}/{d['metadata']['name']}"] = d["spec"]["template"]["spec"]["containers"][0]["image"]
        return out

    def drain(self, queue: str) -> list[dict]:
        out = []
        while True:
            got = self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            if not got.get("Messages"):
                return out
            for m in got["Messages"]:
                out.append(json.loads(m["Body"]))
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])


@dataclass
class Expect:
    """One sample's outcome. `answer`: key → expected value (dotted keys reach into the JSON;
    a compiled pattern matches a string). `error`: (errorType, pattern) of a failed invocation.
    The effects: new export tasks, new records, Deployments whose image changed (→ new image),
    mail subjects (patterns, in order), failed-invocations records (their error types)."""
    says: str
    answer: dict = field(default_factory=dict)
    error: tuple[str, str] | None = None
    log: str | None = None
    exports: int = 0
    records: set = field(default_factory=set)
    images: dict = field(default_factory=dict)
    mail: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    follow_ups: int = 0


def dig(value, path: str):
    for key in path.split("."):
        if isinstance(value, list):
            if key.isdigit():
                # A missing item is a wrong answer to report, not a crash of the checker.
                value = value[int(key)] if int(key) < len(value) else None
            else:
                value = len(value) if key == "len" else None
        elif isinstance(value, dict):
            value = value.get(key)
        else:
            return None
    return value


def verify(expect: Expect, answer, logs: str, world: World, before: dict) -> str | None:
    after = world.snapshot()
    problems = []
    if expect.error:
        kind, pattern = expect.error
        if not isinstance(answer, dict) or answer.get("errorType") != kind \
                or not re.search(pattern, answer.get("errorMessage", "")):
            problems.append(f"expected {kind} matching {pattern!r}")
    elif not isinstance(answer, dict) or "errorType" in answer:
        problems.append("expected a successful invocation")
    for path, want in expect.answer.items():
        got = dig(answer, path)
        ok = bool(re.search(want, got)) if isinstance(want, re.Pattern) and isinstance(got, str) else got == want
        if not ok:
            problems.append(f"answer {path} = {got!r}, expected {want!r}")
    if expect.log and not re.search(expect.log, logs):
        problems.append(f"log has no {expect.log!r}")
    new_exports = after["exports"] - before["exports"]
    if len(new_exports) != expect.exports:
        problems.append(f"{len(new_exports)} export tasks started, expected {expect.exports}")
    changed = after["records"] ^ before["records"]
    if changed != expect.records:
        problems.append(f"records changed: {sorted(changed)}, expected {sorted(expect.records)}")
    moved = {k: v for k, v in after["images"].items() if before["images"].get(k) != v}
    if moved != expect.images:
        problems.append(f"images changed: {moved}, expected {expect.images}")
    if len(after["mail"]) != len(expect.mail) or not all(
            re.fullmatch(p, s) for p, s in zip(expect.mail, sorted(after["mail"]))):
        problems.append(f"mail {after['mail']}, expected {expect.mail}")
    if after["follow_ups"] - before["follow_ups"] != expect.follow_ups:
        problems.append(f"{after['follow_ups'] - before['follow_ups']} node-group update follow-ups queued, "
                        f"expected {expect.follow_ups}")
    if after["failed"] != expect.failed:
        problems.append(f"failed-invocations records {after['failed']}, expected {expect.failed}")
    return "; ".join(problems) or None


def rolled(*names: str, to: str) -> dict:
    return {n: PINNED + to for n in names}


def refused(pattern: str) -> dict:
    """A refused event's answer: recorded in the failed-invocations queue, so Lambda does not
    retry it (bridgekeeper::failures)."""
    return {"rejected": True, "error_type": "NonRetryable.InvalidEvent",
            "recorded_in_failed_invocations_queue": True, "error_message": re.compile(pattern)}


def alert(subject: str) -> str:
    return re.escape(f"[local] {subject}")


CLOUDFORMATION = ("Retryable.Transient", "could not answer CloudFormation at the response URL")

EXPECT: dict[str, Expect] = {
    # CloudFormation's custom resource: the answer goes to the S3 URL in the request, which a
    # local run cannot reach (and moto has no EKS access entries): the request is read, its
    # principal allowed, every cluster asked, and the answer fails where it must.
    "access-entries/create.json": Expect("reads the request, asks EKS for each cluster, cannot answer S3", error=CLOUDFORMATION,
                                         log=r"eks:CreateAccessEntry.*tools-eks"),
    "access-entries/delete.json": Expect("the same for a delete", error=CLOUDFORMATION, log=r"eks:DeleteAccessEntry"),
    "access-entries/update.json": Expect("the same for an update", error=CLOUDFORMATION, log=r"eks:"),

    "dns-sync/load-balancer-created.json": Expect(
        "aliases the Ingress's two hosts to the load balancer, with ownership records",
        answer={"zones.0.created": ["api.shop.local.example.com", "shop.local.example.com"], "zones.0.batches": 1},
        records={f"A api.{ZONE}", f"A {ZONE}", f"TXT _bridgekeeper.api.{ZONE}", f"TXT _bridgekeeper.{ZONE}"},
        mail=[alert("DNS sync: 2 records changed in shop.local.example.com")]),
    "dns-sync/manual.json": Expect("a second run, manual so every zone is read: nothing to change, nothing sent",
                                   answer={"zones.0.unchanged": 2, "zones.0.batches": 0, "route53.zones_read": 1}),
    "dns-sync/schedule.json": Expect(
        "the same on the schedule: the clusters want what was applied, so Route53 is not asked",
        answer={"zones.len": 0, "route53.zones_listed": False, "route53.zones_read": 0,
                "route53.zones_unchanged": 1}),

    "dns-sync/scheduler.json": Expect(
        "EventBridge Scheduler's Input (ScheduleV2): the same scheduled run, nothing to change",
        answer={"zones.len": 0, "route53.zones_read": 0, "route53.zones_unchanged": 1}),

    "image-rollout/push-attestation.json": Expect("an attestation: ignored", answer={"ignored": re.compile("attestation"), "push": None}),
    "image-rollout/push-bad-digest.json": Expect(
        "a malformed digest: refused (NonRetryable), kept in the failed-invocations queue",
        answer=refused("image-digest"), failed=["NonRetryable.InvalidEvent"]),
    "image-rollout/push-failed.json": Expect("a failed push: ignored", answer={"ignored": re.compile("did not succeed")}),
    "image-rollout/push-latest.json": Expect(
        "pins shop-dev's two Deployments to the pushed digest (ECR confirms it)",
        answer={"clusters.0.cluster": "dev", "clusters.0.rolled.len": 2},
        images=rolled("shop-dev/api", "shop-dev/worker", to=LATEST),
        mail=[alert(f"shop/api:latest ({LATEST[7:19]}) rolled to 2 Deployments in dev")]),
    "image-rollout/push-stable.json": Expect(
        "pins shop-prod/api to the pushed digest",
        answer={"clusters.0.cluster": "prod", "clusters.0.rolled.len": 1},
        images=rolled("shop-prod/api", to=STABLE),
        mail=[alert(f"shop/api:stable ({STABLE[7:19]}) rolled to 1 Deployment in prod")]),
    "image-rollout/push-untagged.json": Expect("untagged: ignored", answer={"ignored": re.compile("untagged push")}),
    "image-rollout/push-version.json": Expect("v1.4.2: no rule follows it", answer={"ignored": "no rule matches shop/api:v1.4.2"}),
    "image-rollout/reconcile.json": Expect(
        "the reconcile: every followed tag already where ECR says, nothing rolled",
        answer={"clusters.len": 2, "clusters.0.rolled": [], "clusters.1.rolled": [], "images.len": 2}),
    "image-rollout/scheduler.json": Expect(
        "the reconcile started by EventBridge Scheduler's Input: the same, nothing rolled",
        answer={"clusters.len": 2, "clusters.0.rolled": [], "clusters.1.rolled": [], "images.len": 2}),

    "scaling-alerts/alarm-anomaly.json": Expect("one alarm mail", answer={"notifications": 1},
                                                mail=[alert("ALARM: api-latency-anomaly (TargetResponseTime outside 0.02–0.3)")]),
    "scaling-alerts/alarm-composite-suppressed.json": Expect("says it was suppressed", answer={"notifications": 1},
                                                             mail=[alert("ALARM (suppressed): prod-api-degraded")]),
    "scaling-alerts/alarm-math.json": Expect("names the expression", answer={"notifications": 1},
                                             mail=[alert("ALARM: nodes-network-high (Total Network Traffic > 10000)")]),
    "scaling-alerts/alarm-muted.json": Expect("says it was muted", answer={"notifications": 1},
                                              mail=[alert("ALARM (muted): api-cpu-high (CPUUtilization > 80)")]),
    "scaling-alerts/alarm-ok.json": Expect("older than api-cpu-high's reported change: not sent (stale)",
                                           answer={"notifications": 0, "dropped": 1}),
    "scaling-alerts/alarm-state-change.json": Expect("the same", answer={"notifications": 0, "dropped": 1}),
    "scaling-alerts/addon-health-degraded.json": Expect(
        "an EKS add-on degraded, named by its ARN; DescribeAddon is asked (moto has none: the message says what EKS could not tell)",
        answer={"notifications": 1},
        mail=[alert("Add-on prod-eks/vpc-cni degraded")]),
    "scaling-alerts/alarm-contributor.json": Expect(
        "a Metrics Insights alarm's series in ALARM, named with its node group",
        answer={"notifications": 1},
        mail=[alert("ALARM: nodes-cpu-by-group (AutoScalingGroupName=eks-prod-ng-1-a2c4e6g8)")]),
    "scaling-alerts/alarm-tagged.json": Expect(
        "tag propagation: its bridgekeeper:severity tag makes the ALARM a warning",
        answer={"notifications": 1},
        mail=[alert("ALARM: payments-cpu-high (CPUUtilization > 80)")]),
    "scaling-alerts/health-scheduled-retirement.json": Expect(
        "AWS Health's retirement of two instances: each looked up in EC2, neither a node here: dropped",
        answer={"dropped": 2, "notifications": 0}),
    "scaling-alerts/instance-refresh-checkpoint.json": Expect(
        "an instance refresh at its checkpoint", answer={"notifications": 1},
        mail=[alert("Instance refresh of eks-prod-ng-1-a2c4e6g8 at its 50% checkpoint")]),
    "scaling-alerts/instance-refresh-failed.json": Expect(
        "the same refresh failed", answer={"notifications": 1},
        mail=[alert("Instance refresh of eks-prod-ng-1-a2c4e6g8 failed")]),
    "scaling-alerts/instance-stopped.json": Expect("not a node of a watched cluster: dropped", answer={"dropped": 1, "notifications": 0}),
    "scaling-alerts/launch-successful.json": Expect("one mail", answer={"notifications": 1},
                                                    mail=[alert("1 node launched in eks-prod-ng-1-a2c4e6g8, desired 4→5")]),
    "scaling-alerts/launch-unsuccessful.json": Expect("one mail", answer={"notifications": 1},
                                                      mail=[alert("1 node failed to launch in eks-prod-ng-1-a2c4e6g8, desired 4→5")]),
    "scaling-alerts/lifecycle-launch.json": Expect("one mail", answer={"notifications": 1},
                                                   mail=[alert("1 node held by a launch lifecycle hook in eks-prod-ng-1-a2c4e6g8")]),
    "scaling-alerts/lifecycle-terminate.json": Expect("one mail", answer={"notifications": 1},
                                                      mail=[alert("1 node held by a terminate lifecycle hook in eks-prod-ng-1-a2c4e6g8")]),
    "scaling-alerts/nodegroup-config-denied.json": Expect("one mail", answer={"notifications": 1},
                                                          mail=[alert("DENIED: node group prod-eks/ng-1 configuration change: AccessDenied")]),
    "scaling-alerts/nodegroup-config-failed.json": Expect("one mail", answer={"notifications": 1},
                                                          mail=[alert("FAILED: node group prod-eks/ng-1 configuration change: InvalidParameterException")]),
    "scaling-alerts/nodegroup-config-update.json": Expect("one mail, and the update followed", answer={"notifications": 1},
                                                          mail=[alert("Node group prod-eks/ng-1 resized: desired 8, min 3, max 12")],
                                                          follow_ups=1),
    "scaling-alerts/nodegroup-create.json": Expect("one mail", answer={"notifications": 1},
                                                   mail=[alert("Node group prod-eks/ng-spot creation started")]),
    "scaling-alerts/nodegroup-delete.json": Expect("one mail", answer={"notifications": 1},
                                                   mail=[alert("Node group prod-eks/ng-old deletion started")]),
    "scaling-alerts/nodegroup-labels-update.json": Expect("one mail, and the update followed", answer={"notifications": 1},
                                                          mail=[alert("Node group prod-eks/ng-1 updated: labels, taints")],
                                                          follow_ups=1),
    "scaling-alerts/nodegroup-version-update.json": Expect("one mail, and the update followed", answer={"notifications": 1},
                                                           mail=[alert("Node group prod-eks/ng-1 update to release 1.33.5-20261110 started")],
                                                           follow_ups=1),
    "scaling-alerts/rebalance-recommendation.json": Expect("not a node of a watched cluster: dropped", answer={"dropped": 1, "notifications": 0}),
    "scaling-alerts/spot-interruption.json": Expect("the same", answer={"dropped": 1, "notifications": 0}),
    "scaling-alerts/sqs-batch.json": Expect(
        "six records: three launches coalesced into one mail, one resize, two EC2 events dropped",
        answer={"events": 6, "notifications": 2, "coalesced": 3, "dropped": 2, "batchItemFailures": []},
        mail=[alert("3 nodes launched in eks-prod-ng-1-a2c4e6g8, desired 4→7"),
              alert("Node group prod-eks/ng-1 resized: desired 8, min 3, max 12")]),
    "scaling-alerts/sqs-flapping-alarm.json": Expect("three changes of one alarm: one mail, its latest state",
                                                     answer={"events": 3, "notifications": 1, "coalesced": 2},
                                                     mail=[alert("ALARM: api-cpu-high (CPUUtilization > 80), 3 changes")]),
    "scaling-alerts/sqs-malformed-record.json": Expect(
        "the malformed record is kept in the failed-invocations queue, not retried; the other, "
        "reported by sqs-batch.json already, is not sent again",
        answer={"events": 2, "duplicates": 1, "notifications": 0, "batchItemFailures": [],
                "failures.0.message_id": "7e0c1b2a-malformed-record", "failures.0.retryable": False},
        failed=["NonRetryable.InvalidEvent"]),
    "scaling-alerts/warm-pool-return.json": Expect(
        "a node returned to the warm pool is not a termination", answer={"notifications": 1},
        mail=[alert("1 node held by a terminate lifecycle hook (into the warm pool) in eks-prod-ng-1-a2c4e6g8")]),
    "scaling-alerts/terminate-successful.json": Expect("one mail", answer={"notifications": 1},
                                                       mail=[alert("1 node terminated in eks-prod-ng-1-a2c4e6g8, desired 5→4")]),
    "scaling-alerts/terminate-unsuccessful.json": Expect("one mail", answer={"notifications": 1},
                                                         mail=[alert("1 node failed to terminate in eks-prod-ng-1-a2c4e6g8, desired 5→4")]),

    "snapshot-export/backup-snapshot-created.json": Expect(
        "an AWS Backup snapshot the stand-ins do not hold: RDS is asked whose it is, nothing started",
        answer={"ignored": "RDS no longer lists the snapshot", "run": None}),
    "snapshot-export/cluster-export-failed.json": Expect(
        "reports the failed export, then starts the night's exports in the freed slot",
        answer={"kind": "cluster", "next.started.len": 3},
        exports=3,
        mail=[alert("RDS export FAILED: orders-aurora (rds:orders-aurora-2026-11-21-02-30)"),
              alert("RDS snapshot exports: 3 started")]),
    "snapshot-export/export-completed.json": Expect(
        "reports the completed export; every source's newest snapshot is exported already",
        answer={"kind": "instance", "next.already_exported.len": 3, "next.started": []},
        mail=[alert("RDS export completed: shop-db (rds:shop-db-2026-11-21-02-10)")]),
    "snapshot-export/foreign-event.json": Expect(
        "an S3 event: refused (NonRetryable), kept in the failed-invocations queue",
        answer=refused(r"source \"aws\.s3\".* is not handled"), failed=["NonRetryable.InvalidEvent"]),
    "snapshot-export/schedule.json": Expect("the nightly run: every source exported already, nothing sent",
                                            answer={"trigger": "schedule", "already_exported.len": 3, "started": []}),
    "snapshot-export/scheduler.json": Expect(
        "the nightly run started by EventBridge Scheduler's Input: every source exported already",
        answer={"trigger": "schedule", "already_exported.len": 3, "started": []}),
    "snapshot-export/snapshot-created.json": Expect("a new snapshot: the same run, nothing new",
                                                    answer={"run.already_exported.len": 3, "run.started": []}),
}
