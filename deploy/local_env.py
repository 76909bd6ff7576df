"""Writes a SAM --env-vars file from a deployed stack, so that `sam local invoke` runs a function
on this machine against that stack's real resources (its topic, queue, table, bucket, clusters).

    python deploy/local_env.py STACK [--region REGION] [--out FILE]     # make stack-env STACK=...
    sam local invoke SnapshotExportFunction -e events/snapshot-export/schedule.json \\
        --env-vars .sam-stack.json --parameter-overrides Architecture=x86_64

Each function's variables are read from the deployed function itself (GetFunctionConfiguration),
so they are exactly what it runs with: nothing is rebuilt from parameters. SAM then runs the
local build with the shell's credentials, not the function's role: those credentials need
what the function's role allows (its access map in functions/<name>/access.json) plus, for this
script, cloudformation:ListStackResources on the stack and lambda:GetFunctionConfiguration on
its functions (and kms:Decrypt if the variables are encrypted with a customer key).
"""
import argparse
import json
import sys
from pathlib import Path

# sam local invoke needs none of these: SAM sets the region and credentials itself, and Lambda
# sets the rest in a deployed function.
LAMBDA_SET = {"AWS_REGION", "AWS_DEFAULT_REGION", "AWS_LAMBDA_LOG_FORMAT", "AWS_LAMBDA_LOG_LEVEL"}


def env_vars(resources: list[dict], configuration) -> dict:
    """`{LogicalId: {VAR: value}}` for every function of the stack; `configuration(name)` is
    GetFunctionConfiguration's answer for a physical function name."""
    out = {}
    for r in resources:
        if r["ResourceType"] != "AWS::Lambda::Function":
            continue
        variables = configuration(r["PhysicalResourceId"]).get("Environment", {}).get("Variables", {})
        out[r["LogicalResourceId"]] = {k: v for k, v in sorted(variables.items()) if k not in LAMBDA_SET}
    if not out:
        raise SystemExit("the stack has no Lambda functions: is it a Bridgekeeper hub stack?")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stack")
    parser.add_argument("--region")
    parser.add_argument("--out", default=".sam-stack.json")
    args = parser.parse_args()
    import boto3

    session = boto3.session.Session(region_name=args.region)
    cfn, lam = session.client("cloudformation"), session.client("lambda")
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=args.stack)
    resources = [r for page in pages for r in page["StackResourceSummaries"]]
    files = env_vars(resources, lambda name: lam.get_function_configuration(FunctionName=name))
    Path(args.out).write_text(json.dumps(files, indent=2) + "\n")
    print(f"wrote {args.out}: {', '.join(files)} of stack {args.stack} ({session.region_name})", file=sys.stderr)


if __name__ == "__main__":
    main()
