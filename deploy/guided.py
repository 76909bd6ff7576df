"""`make deploy`: a first deployment in eight questions, not `sam deploy --guided`'s sixty-five.

Asks what a first deployment needs (environment, region, alert e-mail, clusters, zone, what to
export, what rolls where, the schedules' time zone), each in one line, checks every answer against
the template's own AllowedPattern/AllowedValues, writes the `[<env>.deploy.parameters]` entry of
samconfig.toml (comments and other entries kept), then runs `make package` (this repository's
`sam build`) and `sam deploy --config-env <env>` (after `make package`, this repository's `sam build`). Everything else keeps the template's default and stays reachable
through samconfig.toml or `--parameter-overrides` (README, "Deploying").

    .venv/sam/bin/python deploy/guided.py                   # asks, writes, builds, deploys
    .venv/sam/bin/python deploy/guided.py --no-deploy < answers.txt   # writes and prints only
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

import tomlkit
from samtranslator.yaml_helper import yaml_parse

ROOT = pathlib.Path(__file__).resolve().parents[1]

# (key, the one-line question, default: a function of the answers so far)
QUESTIONS = [
    ("env", "Environment (dev, staging or prod): names the stack bridgekeeper-<env> and tags every message",
     lambda a: "dev"),
    ("region", "AWS region to deploy to",
     lambda a: os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-west-1"),
    ("email", "E-mail address for alerts (blank: subscribe one later)", lambda a: ""),
    ("clusters", "EKS clusters Bridgekeeper works on, by name, comma-separated (blank: none)", lambda a: ""),
    ("zone", "Route53 zone for their hosts, as ZONE-ID=domain (blank: no DNS sync)", lambda a: ""),
    ("export", "Databases to export nightly: the value of their bridgekeeper:export tag, or "
               "db:<instance id> and cluster:<Aurora cluster id>, comma-separated", lambda a: a["env"]),
    ("rollout", "Image tag that rolls to these clusters, then the namespaces it may roll in, "
                "e.g. `latest shop,web` (blank: no image rollout)",
     lambda a: {"dev": "latest", "staging": "staging", "prod": "stable"}.get(a["env"], "") if a["clusters"] else ""),
    ("timezone", "Time zone the nightly export's 03:00 is read in (IANA name, e.g. Europe/Berlin)",
     lambda a: "UTC"),
]


class Invalid(ValueError):
    pass


def template_parameters():
    return yaml_parse((ROOT / "template.yaml").read_text())["Parameters"]


def check(params, name, value):
    """The template's own rule for `name`, so a refused answer is refused before AWS is asked."""
    spec = params[name]
    # A list parameter's pattern is checked against each of its items, as CloudFormation does.
    items = value.split(",") if spec.get("Type") == "CommaDelimitedList" else [value]
    for item in items:
        if "AllowedValues" in spec and item not in spec["AllowedValues"]:
            raise Invalid(f"{name}: {item!r} is not one of {', '.join(spec['AllowedValues'])}")
        pattern = spec.get("AllowedPattern")
        if pattern and not re.fullmatch(pattern, item):
            raise Invalid(f"{name}: {item!r} — {spec.get('ConstraintDescription', 'not allowed by ' + pattern)}")
    return value


def overrides(a, params):
    """The answers as template parameters (only those that differ from a default)."""
    out = {"Environment": a["env"], "ScheduleTimezone": a["timezone"]}
    if a["email"]:
        out["AlertEmail"] = a["email"]
    names = [c.strip() for c in a["clusters"].split(",") if c.strip()]
    aliases = ",".join(f"{n}={n}" for n in names)
    if names:
        out["ScalingAlertsClusters"] = ",".join(names)
    if a["zone"]:
        if not names:
            raise Invalid("a zone needs the clusters whose hosts it holds")
        zone, _, domain = a["zone"].partition("=")
        if not domain:
            raise Invalid(f"zone {a['zone']!r}: write ZONE-ID=domain, e.g. Z0123456789ABCDEFGHIJ=dev.example.com")
        out.update(DnsSyncClusters=aliases, DnsSyncEksClusters=",".join(names), DnsSyncZoneIds=zone.strip(),
                   DnsSyncDomainFilter=domain.strip(), DnsSyncOwnerId=f"bridgekeeper-{a['env']}")
    items = [x.strip() for x in a["export"].split(",") if x.strip()] or [a["env"]]
    instances = [x[len("db:"):] for x in items if x.startswith("db:")]
    clusters = [x[len("cluster:"):] for x in items if x.startswith("cluster:")]
    if len(instances) + len(clusters) == len(items):
        if instances:
            out["SnapshotExportDbInstances"] = ",".join(instances)
        if clusters:
            out["SnapshotExportDbClusters"] = ",".join(clusters)
    elif len(items) == 1:
        out["SnapshotExportSourceTag"] = f"bridgekeeper:export={items[0]}"
    else:
        raise Invalid(f"export {a['export']!r}: one tag value, or db:<instance id> and cluster:<Aurora id>, "
                      "comma-separated")
    tag, _, namespaces = a["rollout"].strip().partition(" ")
    if tag:
        if not names:
            raise Invalid("image rollout needs the clusters it rolls in")
        rule = {"repository": "*", "tag": tag, "clusters": names}
        spaces = [n.strip() for n in namespaces.split(",") if n.strip()]
        if spaces:
            rule["namespaces"] = spaces
        out.update(ImageRolloutClusters=aliases, ImageRolloutEksClusters=",".join(names),
                   ImageRolloutRules=json.dumps([rule]))
    else:
        # The template's default rules name dev and prod; with no clusters image-rollout is not
        # deployed, and the rules are only checked.
        pass
    for name, value in out.items():
        check(params, name, value)
    return out


def quoted(value):
    # samconfig's parameter_overrides is one string of Key=Value pairs, shell-quoted per value.
    return "'" + value.replace("'", "'\"'\"'") + "'" if re.search(r"[\s'\"\[\]{},]", value) else value


def write_samconfig(path, env, region, params):
    doc = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
    doc.setdefault("version", 0.1)
    entry = tomlkit.table()
    entry["stack_name"] = f"bridgekeeper-{env}"
    entry["region"] = region
    entry["capabilities"] = "CAPABILITY_IAM"
    entry["confirm_changeset"] = True
    entry["resolve_s3"] = True
    entry["parameter_overrides"] = " ".join(f"{k}={quoted(v)}" for k, v in params.items())
    section = doc.setdefault(env, tomlkit.table(is_super_table=True))
    deploy = section.setdefault("deploy", tomlkit.table(is_super_table=True))
    deploy["parameters"] = entry
    path.write_text(tomlkit.dumps(doc))


def ask(questions, stream, interactive, params):
    answers = {}
    for key, text, default in questions:
        d = default(answers)
        while True:
            if interactive:
                print(f"{text} [{d}]: ", end="", flush=True)
            line = stream.readline()
            if not line and not interactive:
                line = "\n"
            value = line.strip() or d
            answers[key] = value
            try:
                if key == "env":
                    check(params, "Environment", value)
                elif key == "email" and value:
                    check(params, "AlertEmail", value)
                elif key == "timezone":
                    check(params, "ScheduleTimezone", value)
                elif key == "region" and not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-\d", value):
                    raise Invalid(f"region {value!r}: e.g. eu-west-1")
                break
            except Invalid as e:
                if not interactive:
                    raise
                print(f"  {e}")
    return answers


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samconfig", type=pathlib.Path, default=ROOT / "samconfig.toml")
    ap.add_argument("--no-deploy", action="store_true", help="write the samconfig entry and print the commands only")
    args = ap.parse_args(argv)
    params = template_parameters()
    interactive = sys.stdin.isatty()
    try:
        answers = ask(QUESTIONS, sys.stdin, interactive, params)
        values = overrides(answers, params)
    except Invalid as e:
        print(f"guided: {e}", file=sys.stderr)
        return 2
    write_samconfig(args.samconfig, answers["env"], answers["region"], values)
    env = answers["env"]
    print(f"\nWrote [{env}.deploy.parameters] in {args.samconfig.name}: stack bridgekeeper-{env} in "
          f"{answers['region']}, {len(values)} settings; the other {len(params) - len(values)} keep their "
          "defaults (change them there or with --parameter-overrides).")
    # `make package` is `sam build` as this repository needs it (the Rust builder is a beta
    # feature of the SAM CLI); the SAM CLI is the one `make` installed beside this Python.
    sam = str(pathlib.Path(sys.executable).parent / "sam")
    commands = [(["make", "package"], "make package"),
                ([sam, "deploy", "--config-env", env], f"sam deploy --config-env {env}")]
    if args.no_deploy:
        for _, shown in commands:
            print("next: " + shown)
        return 0
    for command, shown in commands:
        print("$ " + shown, flush=True)
        done = subprocess.run(command, cwd=ROOT)
        if done.returncode:
            return done.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
