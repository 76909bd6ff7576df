"""The Serverless Application Repository's rules for template.yaml, offline (`make template-check`):
the `AWS::ServerlessRepo::Application` metadata as the SAM developer guide documents it ("AWS SAM
template Metadata section properties": lengths, patterns, no intrinsics, local licence and
README), its version the workspace's, every resource type of the expanded template on SAR's list
of supported resources (sar-resources.txt), and the capabilities a deployer acknowledges.

    python tests/template/sar.py [expanded.json ...]
"""

import json
import pathlib
import re
import sys
import tomllib

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

KEY = "AWS::ServerlessRepo::Application"
MAX_FILE = 5 * 1024 * 1024

# Types the expanded template uses that the last offline copy of SAR's list (sar-resources.txt)
# does not name. Each is said on every run, never passed silently: `make publish` (SAR itself) is
# where they are confirmed or refused; a new type not here fails the check.
NOT_IN_THE_OFFLINE_LIST = {
    "AWS::Lambda::EventInvokeConfig": "each function's OnFailure destination (SAM's EventInvokeConfig)",
    "AWS::Scheduler::Schedule": "the schedules (SAM's ScheduleV2)",
    "AWS::Scheduler::ScheduleGroup": "one group per function, for its alarm",
}

# SAR's "Acknowledging application capabilities": what a deployer must accept, by resource type.
IAM = {"AWS::IAM::Role", "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::Group",
       "AWS::IAM::InstanceProfile"}
RESOURCE_POLICIES = {"AWS::Lambda::LayerVersionPermission", "AWS::Lambda::Permission",
                     "AWS::Events::EventBusPolicy", "AWS::IAM::Policy",
                     "AWS::ApplicationAutoScaling::ScalingPolicy", "AWS::S3::BucketPolicy",
                     "AWS::SQS::QueuePolicy", "AWS::SNS::TopicPolicy"}


def intrinsic(value):
    if isinstance(value, dict):
        return any(k == "Ref" or k.startswith("Fn::") or intrinsic(v) for k, v in value.items())
    if isinstance(value, list):
        return any(intrinsic(v) for v in value)
    return False


def metadata_findings(template):
    meta = template.get("Metadata", {}).get(KEY)
    if not isinstance(meta, dict):
        return [f"no {KEY} metadata: sam publish has nothing to publish"]
    out = []
    if intrinsic(meta):
        out.append(f"{KEY}: intrinsic functions are not supported there")
    rules = {
        "Name": (True, 1, 140, r"[a-zA-Z0-9\-]+"),
        "Description": (True, 1, 256, None),
        "Author": (True, 1, 127, r"[a-z0-9](([a-z0-9]|-(?!-))*[a-z0-9])?"),
    }
    for prop, (required, lo, hi, pattern) in rules.items():
        v = meta.get(prop)
        if v is None:
            if required:
                out.append(f"{KEY}: {prop} is required")
            continue
        if not isinstance(v, str) or not lo <= len(v) <= hi:
            out.append(f"{KEY}: {prop} must be {lo}-{hi} characters")
        elif pattern and not re.fullmatch(pattern, v):
            out.append(f"{KEY}: {prop} {v!r} does not match {pattern}")
    labels = meta.get("Labels", [])
    if len(labels) > 10:
        out.append(f"{KEY}: at most 10 labels, not {len(labels)}")
    for label in labels:
        if not re.fullmatch(r"[a-zA-Z0-9+\-_:/@]{1,127}", str(label)):
            out.append(f"{KEY}: label {label!r} does not match SAR's pattern")
    version = tomllib.loads((ROOT / "Cargo.toml").read_text())["workspace"]["package"]["version"]
    if meta.get("SemanticVersion") != version:
        out.append(f"{KEY}: SemanticVersion {meta.get('SemanticVersion')!r} is not the workspace's {version}")
    if meta.get("SpdxLicenseId") != "Apache-2.0":
        out.append(f"{KEY}: SpdxLicenseId is not the workspace's licence, Apache-2.0")
    for prop in ("LicenseUrl", "ReadmeUrl"):
        path = ROOT / str(meta.get(prop, ""))
        if not meta.get(prop) or not path.is_file():
            out.append(f"{KEY}: {prop} must name a file of the repository (sam package uploads it)")
        elif path.stat().st_size > MAX_FILE:
            out.append(f"{KEY}: {prop} is over SAR's 5 MB")
    if (ROOT / "LICENSE").is_file() and "Apache License" not in (ROOT / "LICENSE").read_text()[:200]:
        out.append("LICENSE is not the Apache License the metadata names")
    return out


def supported():
    return {line.strip() for line in (HERE / "sar-resources.txt").read_text().splitlines()
            if line.strip() and not line.startswith("#")}


def resource_findings(expanded, listed):
    """(findings, the types used that are not on the offline list but known here)."""
    out, unverified = [], set()
    for name, res in expanded.get("Resources", {}).items():
        kind = res.get("Type", "")
        if kind.startswith("Custom::"):
            kind = "AWS::CloudFormation::CustomResource"
        if kind in listed:
            continue
        if kind in NOT_IN_THE_OFFLINE_LIST:
            unverified.add(kind)
        else:
            out.append(f"{name}: {kind} is not a resource type the Serverless Application Repository supports")
    return out, unverified


def capabilities(expanded):
    kinds = {r.get("Type") for r in expanded.get("Resources", {}).values()}
    caps = set()
    if kinds & IAM:
        caps.add("CAPABILITY_IAM")
    if any(r.get("Type") == "AWS::IAM::Role" and "RoleName" in r.get("Properties", {})
           for r in expanded.get("Resources", {}).values()):
        caps.add("CAPABILITY_NAMED_IAM")
    if kinds & RESOURCE_POLICIES:
        caps.add("CAPABILITY_RESOURCE_POLICY")
    if "AWS::Serverless::Application" in kinds:
        caps.add("CAPABILITY_AUTO_EXPAND")
    return caps


def readme_findings(caps):
    text = (ROOT / "README.md").read_text()
    section = text.split("### Serverless Application Repository", 1)
    if len(section) < 2:
        return ["README has no 'Serverless Application Repository' section"]
    body = section[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    return [f"README's Serverless Application Repository section does not name {c}"
            for c in sorted(caps) if c not in body]


def main(paths):
    from samtranslator.yaml_helper import yaml_parse
    findings = metadata_findings(yaml_parse((ROOT / "template.yaml").read_text()))
    listed, unverified, caps = supported(), set(), set()
    for p in paths:
        expanded = json.loads(pathlib.Path(p).read_text())
        found, maybe = resource_findings(expanded, listed)
        findings += [f"{pathlib.Path(p).name}: {f}" for f in found]
        unverified |= maybe
        caps |= capabilities(expanded)
    findings += readme_findings(caps)
    for kind in sorted(unverified):
        print(f"sar: {kind} ({NOT_IN_THE_OFFLINE_LIST[kind]}) is not in the offline copy of SAR's "
              "supported list: make publish is where SAR says")
    print(f"sar: a deployer acknowledges {', '.join(sorted(caps))}")
    for f in findings:
        print(f"sar: {f}", file=sys.stderr)
    if findings:
        return 1
    print(f"sar: metadata and {len(paths)} expanded templates checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
