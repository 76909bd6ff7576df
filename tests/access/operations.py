"""The AWS operations each function's code calls, read from its source, against its access map:
an SDK call the map does not list fails the check (the map would no longer say what the function
needs, and the evaluation would not cover it).

A call is an SDK fluent-builder method (`.describe_db_snapshots()`) named after an operation of a
service whose crate (`aws_sdk_rds`) the same file uses, with the operation names read from the
service models botocore ships; plus `AssumeRoleProvider` (sts:AssumeRole). A function's code is
its crate's non-test code and the modules of the shared crate it names (a shared module's calls
are attributed whole: an operation of it the function never reaches is listed in the map's
`not_called`, with the reason).
"""

import json
import pathlib
import re

import botocore.session
from botocore import xform_name

ROOT = pathlib.Path(__file__).resolve().parents[2]

# SDK crate suffix -> (botocore service name, IAM action prefix)
SERVICES = {
    "rds": ("rds", "rds"), "sns": ("sns", "sns"), "sqs": ("sqs", "sqs"),
    "dynamodb": ("dynamodb", "dynamodb"), "route53": ("route53", "route53"),
    "elasticloadbalancingv2": ("elbv2", "elasticloadbalancing"), "ecr": ("ecr", "ecr"),
    "eks": ("eks", "eks"), "autoscaling": ("autoscaling", "autoscaling"), "ec2": ("ec2", "ec2"),
    "sts": ("sts", "sts"), "s3": ("s3", "s3"), "glue": ("glue", "glue"),
}
# Operations whose IAM action has another name (Service Authorization Reference).
ACTION_OF = {"s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket"}
# Shared modules that call others on a function's behalf: a cluster target in a member account
# is reached through that account's role; every main is built on `wiring`, which records refused
# events (failures), claims them (idempotency) and assumes member roles (accounts).
CALLS_THROUGH = {
    "cluster": {"accounts", "cluster_auth"},
    "wiring": {"failures", "idempotency", "accounts"},
}
# Presigned, never sent by the function: EKS calls it to check the token (no permission needed).
NOT_CALLS = {"sts:GetCallerIdentity"}


def operations(service):
    model = botocore.session.get_session().get_service_model(service)
    return {xform_name(op): op for op in model.operation_names}


def without_tests(text):
    """The code before the first #[cfg(test)] item (the test module sits at the end of a file)."""
    return text.split("#[cfg(test)]\nmod ", 1)[0].split("#[cfg(test)]\npub(crate) mod ", 1)[0]


def test_modules(lib):
    return set(re.findall(r"#\[cfg\(test\)\]\s*(?:pub(?:\(crate\))?\s+)?mod\s+(\w+)\s*;", lib))


def calls_in(path, ops_cache):
    text = without_tests(path.read_text())
    found = set()
    for crate in set(re.findall(r"aws_sdk_(\w+)", text)):
        if crate not in SERVICES:
            continue
        service, prefix = SERVICES[crate]
        if service not in ops_cache:
            ops_cache[service] = operations(service)
        for snake, op in ops_cache[service].items():
            if re.search(rf"\.{snake}\(\)", text):
                action = f"{prefix}:{op}"
                found.add(ACTION_OF.get(action, action))
    if "AssumeRoleProvider" in text:
        found.add("sts:AssumeRole")
    return found - NOT_CALLS


def shared_modules(text):
    return set(re.findall(r"bridgekeeper::(\w+)", text))


def function_calls(name, ops_cache):
    """{action: [files that call it]} for one function crate and the shared code it uses."""
    src = ROOT / "functions" / name / "src"
    tests = test_modules((src / "lib.rs").read_text()) if (src / "lib.rs").exists() else set()
    files = [p for p in sorted(src.glob("*.rs")) if p.stem not in tests]
    used, todo = set(), set()
    for p in files:
        todo |= shared_modules(without_tests(p.read_text()))
    shared = ROOT / "shared" / "src"
    # Shared modules the function names, and what they call on its behalf: a cluster target in a
    # member account is reached through that account's role (cluster -> accounts). Other `crate::`
    # references between shared modules are types (errors, the Notifier trait), not calls.
    while todo:
        m = todo.pop()
        if m in used or not (shared / f"{m}.rs").exists():
            continue
        used.add(m)
        todo |= CALLS_THROUGH.get(m, set()) - used
    files += [shared / f"{m}.rs" for m in sorted(used)]
    out = {}
    for p in files:
        for action in calls_in(p, ops_cache):
            out.setdefault(action, []).append(str(p.relative_to(ROOT)))
    return out


def findings():
    out, ops_cache = [], {}
    for path in sorted((ROOT / "functions").glob("*/access.json")):
        fmap = json.loads(path.read_text())
        listed = {e["action"].lower() for e in fmap["calls"] if e.get("expect", "Allowed") == "Allowed"}
        # A shared module's operation this function never reaches, each with the reason.
        listed |= {a.lower() for a in fmap.get("not_called", {})}
        for action, where in sorted(function_calls(path.parent.name, ops_cache).items()):
            if action.lower() not in listed:
                out.append(f"{path.parent.name} calls {action} ({', '.join(where)}), which "
                           f"{path.relative_to(ROOT)} does not list")
    return out


if __name__ == "__main__":
    ops_cache = {}
    for path in sorted((ROOT / "functions").glob("*/access.json")):
        print(path.parent.name, sorted(function_calls(path.parent.name, ops_cache)))
    print("\n".join(findings()) or "every SDK call is in its function's access map")
