"""A CloudFormation stack as AWS would create it from an expanded template, offline: every
condition, parameter, pseudo parameter, Ref, Fn::GetAtt and Fn::Sub resolved to the concrete
names and ARNs CloudFormation would give the resources in a given account, region and stack name.

Physical names follow CloudFormation's shape (`<stack>-<LogicalId>-<random>`, cut to the service's
length limit) so that names built from the stack name are checked against their limits. The
policies of the resulting stack are what tests/access/evaluate.py evaluates.
"""

import hashlib
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "template"))
from intrinsics import NO_VALUE, Resolver  # noqa: E402

# What CloudFormation appends to a generated name, and the services' name limits.
NAME_LIMITS = {
    "AWS::IAM::Role": 64,
    "AWS::Events::Rule": 64,
    "AWS::SQS::Queue": 80,
    "AWS::SNS::Topic": 256,
    "AWS::Lambda::Function": 64,
    "AWS::S3::Bucket": 63,
    "AWS::DynamoDB::Table": 255,
    "AWS::Scheduler::ScheduleGroup": 64,
    "AWS::Scheduler::Schedule": 64,
}

# Names given explicitly, and their limits (what a long stack name must still fit in).
EXPLICIT_NAMES = {
    ("AWS::IAM::Role", "RoleName"): 64,
    ("AWS::Events::Rule", "Name"): 64,
    ("AWS::CloudWatch::Alarm", "AlarmName"): 255,
    ("AWS::CloudWatch::Dashboard", "DashboardName"): 255,
    ("AWS::KMS::Alias", "AliasName"): 256,
    ("AWS::Logs::LogGroup", "LogGroupName"): 512,
    ("AWS::Events::EventBusPolicy", "StatementId"): 64,
}


def partition_of(region):
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


class Stack(Resolver):
    def __init__(self, template, params, name, account, region):
        self.t = template
        self.name, self.account, self.region = name, account, region
        self.partition = partition_of(region)
        self.params = {}
        for key, p in template.get("Parameters", {}).items():
            value = str(params.get(key, p.get("Default", "")))
            self.params[key] = ([x.strip() for x in value.split(",")]
                                if p.get("Type") == "CommaDelimitedList" else value)
        self.types = {k: p.get("Type") for k, p in template.get("Parameters", {}).items()}
        self.conditions = template.get("Conditions", {})
        self.resources = template.get("Resources", {})
        self.cache = {}
        self.stack_id = (f"arn:{self.partition}:cloudformation:{region}:{account}:stack/{name}/"
                         f"{self.uuid('stack')}")

    # ---- names -------------------------------------------------------------------------------

    def uuid(self, seed):
        h = hashlib.sha256(f"{self.name}/{self.account}/{self.region}/{seed}".encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    def generated(self, logical, limit):
        suffix = hashlib.sha256(f"{self.name}/{logical}".encode()).hexdigest()[:12].upper()
        base = f"{self.name}-{logical}"
        return f"{base[: limit - len(suffix) - 1]}-{suffix}"

    def exists(self, logical):
        res = self.resources.get(logical)
        if not isinstance(res, dict):
            return False
        return "Condition" not in res or self.condition(res["Condition"])

    def physical(self, logical):
        """The resource's Ref and attributes, as CloudFormation reports them."""
        res = self.resources[logical]
        kind = res["Type"]
        props = res.get("Properties", {})
        p, a, r = self.partition, self.account, self.region

        def named(prop):
            if prop in props:
                return self.resolve(props[prop])
            return self.generated(logical, NAME_LIMITS.get(kind, 128))

        if kind == "AWS::IAM::Role":
            n = named("RoleName")
            return {"Ref": n, "Arn": f"arn:{p}:iam::{a}:role/{n}", "RoleId": "AROA" + logical.upper()[:17]}
        if kind == "AWS::Lambda::Function":
            n = named("FunctionName")
            return {"Ref": n, "Arn": f"arn:{p}:lambda:{r}:{a}:function:{n}"}
        if kind == "AWS::SNS::Topic":
            n = named("TopicName")
            arn = f"arn:{p}:sns:{r}:{a}:{n}"
            return {"Ref": arn, "TopicArn": arn, "TopicName": n}
        if kind == "AWS::SQS::Queue":
            n = named("QueueName")
            return {"Ref": f"https://sqs.{r}.amazonaws.com/{a}/{n}", "Arn": f"arn:{p}:sqs:{r}:{a}:{n}",
                    "QueueName": n, "QueueUrl": f"https://sqs.{r}.amazonaws.com/{a}/{n}"}
        if kind == "AWS::KMS::Key":
            k = self.uuid(logical)
            return {"Ref": k, "KeyId": k, "Arn": f"arn:{p}:kms:{r}:{a}:key/{k}"}
        if kind == "AWS::S3::Bucket":
            n = named("BucketName").lower()
            return {"Ref": n, "Arn": f"arn:{p}:s3:::{n}", "DomainName": f"{n}.s3.amazonaws.com"}
        if kind == "AWS::DynamoDB::Table":
            n = named("TableName")
            return {"Ref": n, "Arn": f"arn:{p}:dynamodb:{r}:{a}:table/{n}"}
        if kind == "AWS::Events::Rule":
            n = named("Name")
            return {"Ref": n, "Arn": f"arn:{p}:events:{r}:{a}:rule/{n}"}
        if kind == "AWS::Scheduler::ScheduleGroup":
            n = named("Name")
            return {"Ref": n, "Arn": f"arn:{p}:scheduler:{r}:{a}:schedule-group/{n}"}
        if kind == "AWS::Scheduler::Schedule":
            n = named("Name")
            group = self.resolve(props["GroupName"]) if "GroupName" in props else "default"
            return {"Ref": n, "Arn": f"arn:{p}:scheduler:{r}:{a}:schedule/{group}/{n}"}
        if kind == "AWS::CloudWatch::Alarm":
            n = named("AlarmName")
            return {"Ref": n, "Arn": f"arn:{p}:cloudwatch:{r}:{a}:alarm:{n}"}
        if kind == "AWS::Logs::LogGroup":
            n = named("LogGroupName")
            return {"Ref": n, "Arn": f"arn:{p}:logs:{r}:{a}:log-group:{n}:*"}
        n = self.generated(logical, 128)
        return {"Ref": n, "Arn": f"arn:{p}:cloudformation:{r}:{a}:{logical}/{n}"}

    # ---- intrinsics --------------------------------------------------------------------------

    def ref(self, name):
        pseudo = {
            "AWS::AccountId": self.account, "AWS::Region": self.region,
            "AWS::Partition": self.partition, "AWS::StackName": self.name,
            "AWS::StackId": self.stack_id, "AWS::URLSuffix": "amazonaws.com",
        }
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in pseudo:
            return pseudo[name]
        if name in self.params:
            return self.params[name]
        if name in self.resources:
            return self.attr(name, "Ref")
        raise KeyError(f"Ref {name}: no such parameter or resource")

    def attr(self, logical, attribute):
        key = (logical, attribute)
        if key not in self.cache:
            if not self.exists(logical):
                raise KeyError(f"{logical} is not created with these parameters ({attribute} asked)")
            values = self.physical(logical)
            if attribute not in values:
                raise KeyError(f"{logical} ({self.resources[logical]['Type']}) has no {attribute} here")
            self.cache[key] = values[attribute]
        return self.cache[key]

    def sub(self, text, local=None):
        local = local or {}

        def one(m):
            expr = m.group(1)
            if expr.startswith("!"):
                return "${" + expr[1:] + "}"
            if expr in local:
                return str(local[expr])
            if "." in expr and not expr.startswith("AWS::"):
                logical, attribute = expr.split(".", 1)
                return str(self.attr(logical, attribute))
            value = self.ref(expr)
            return ",".join(value) if isinstance(value, list) else str(value)

        return re.sub(r"\$\{([^}]+)\}", one, text)

    def resolve(self, node):
        """The functions a stack's resources use beyond the ones intrinsics.Resolver resolves."""
        if isinstance(node, dict) and len(node) == 1:
            (key, arg), = node.items()
            if key == "Fn::Select":
                return self.resolve(arg[1])[int(self.resolve(arg[0]))]
            if key == "Fn::GetAtt":
                logical, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.attr(logical, attribute)
            if key == "Fn::Sub":
                if isinstance(arg, str):
                    return self.sub(arg)
                return self.sub(arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
        return super().resolve(node)

    # ---- what the checks read ----------------------------------------------------------------

    def created(self, kind=None):
        """(logical id, resource) of every resource these parameters create."""
        for logical, res in self.resources.items():
            if self.exists(logical) and (kind is None or res["Type"] == kind):
                yield logical, res

    def props(self, logical):
        return self.resolve(self.resources[logical].get("Properties", {}))
