#!/usr/bin/env python3
"""The template as CloudFormation receives it: expanded by the SAM translator, then linted.

cfn-lint on the SAM source checks it against SAM's schema without running the transform, so
errors that only exist after it (a function as Fn::Join's delimiter, conditions that no longer
line up, policies with no statement) pass there and fail at deploy. For every parameter set in
params.json this expands each CloudFormation template of the repository, runs cfn-lint and
checkov on the result, and checks:

- every parameter value is one the template allows (AllowedValues, MinValue, MaxValue);
- the template's Rules accept every "accept" set and refuse every "reject" set, by the rule named;
- cfn-lint reports no error and no warning;
- checkov fails no check, and every checkov skip names a check that exists, carries a reason,
  and is needed: the check fails on that resource when the skips are removed;
- AWS would allow every call of the access map and refuse what it must refuse, and no role holds
  an action the map does not list (tests/access/evaluate.py, for hub sets with the member stacks
  their outputs configure).

Usage: check.py [--out DIR]   (exit 1 on any finding; run by `make template-check`)
"""

import argparse
import copy
import json
import logging
import os
import pathlib
import re
import shlex
import subprocess
import sys
import tomllib

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

sys.path.insert(0, str(pathlib.Path(__file__).parent))
sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "access"))
from intrinsics import Resolver  # noqa: E402
from evaluate import check_hub, check_member  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
PARAMS = json.loads((ROOT / "tests/template/params.json").read_text())


# Three stacks in one account must not act on each other's resources: these differ per entry.
SEPARATING = ["SnapshotExportSourceTag", "ScalingAlertsGroupPrefix", "ScalingAlertsAlarmPrefix",
              "DnsSyncOwnerId", "DnsSyncZoneIds", "ImageRolloutEksClusters", "DnsSyncEksClusters"]


def samconfig_sets():
    """samconfig.toml's per-environment parameter overrides, as `sam deploy --config-env` passes
    them (Key=Value, a value with spaces quoted), so every entry is checked as it deploys; and
    findings where two entries would share what keeps their stacks apart."""
    conf = tomllib.loads((ROOT / "samconfig.toml").read_text())
    sets, findings = {}, []
    for env, cmds in conf.items():
        overrides = cmds.get("deploy", {}).get("parameters", {}).get("parameter_overrides") if isinstance(cmds, dict) else None
        if env == "default" or not isinstance(cmds, dict) or not overrides:
            continue
        sets[f"samconfig:{env}"] = dict(kv.split("=", 1) for kv in shlex.split(overrides))
        sets[f"samconfig:{env}"]["_stack"] = cmds["deploy"]["parameters"].get("stack_name")
    # A bare `sam deploy` reads [default]: it must name no stack, or it reconfigures that stack
    # with the template's defaults.
    default = conf.get("default", {})
    named = default.get("global", {}).get("parameters", {}).get("stack_name") or \
        default.get("deploy", {}).get("parameters", {}).get("stack_name")
    if named:
        findings.append(f"samconfig.toml [default]: names stack {named!r}; a bare `sam deploy` would reconfigure it")
    for key in SEPARATING + ["_stack"]:
        seen = {}
        for name, params in sets.items():
            value = params.get(key)
            if value is None:
                findings.append(f"samconfig.toml [{name}]: sets no {key}; stacks in one account would share it")
            elif value in seen:
                findings.append(f"samconfig.toml [{name}]: {key}={value!r} is also {seen[value]}'s")
            else:
                seen[value] = name
    for params in sets.values():
        params.pop("_stack")
    return sets, findings


class NoManagedPolicies:
    """The translator only asks for this when a policy is named by AWS managed-policy name."""

    def load(self):
        return {}


def templates():
    """The root template, and any other CloudFormation template under deploy/."""
    found = [ROOT / "template.yaml"]
    for path in sorted((ROOT / "deploy").rglob("*.yaml")):
        if "AWSTemplateFormatVersion" in path.read_text():
            found.append(path)
    return found


def with_values(template, params):
    """Parameter defaults replaced by the set's values: the linters read defaults."""
    t = copy.deepcopy(template)
    for name, value in params.items():
        if name not in t.get("Parameters", {}):
            raise SystemExit(f"params.json names unknown parameter {name}")
        t["Parameters"][name]["Default"] = value
    return t


def parameter_findings(template):
    out = []
    for name, p in template.get("Parameters", {}).items():
        v = p.get("Default")
        if v is None:
            out.append(f"{name}: no value")
            continue
        # CloudFormation matches AllowedPattern against each item of a CommaDelimitedList.
        if "AllowedPattern" in p:
            items = str(v).split(",") if p["Type"] == "CommaDelimitedList" else [str(v)]
            for item in items:
                if not re.fullmatch(p["AllowedPattern"], item.strip() if p["Type"] == "CommaDelimitedList" else item):
                    out.append(f"{name}: {item!r} does not match AllowedPattern {p['AllowedPattern']}")
        if "AllowedValues" in p and str(v) not in [str(a) for a in p["AllowedValues"]]:
            out.append(f"{name}={v!r} is not one of {p['AllowedValues']}")
        if p.get("Type") == "Number":
            n = float(v)
            if "MinValue" in p and n < float(p["MinValue"]):
                out.append(f"{name}={v} is below MinValue {p['MinValue']}")
            if "MaxValue" in p and n > float(p["MaxValue"]):
                out.append(f"{name}={v} is above MaxValue {p['MaxValue']}")
    return out


def console_findings(template):
    """The console's form (AWS::CloudFormation::Interface): every parameter in exactly one group,
    with a label, and nothing named there that is not a parameter."""
    params = set(template.get("Parameters", {}))
    ui = template.get("Metadata", {}).get("AWS::CloudFormation::Interface")
    if not ui:
        return ["no AWS::CloudFormation::Interface: the console lists every parameter flat"]
    grouped = [p for g in ui.get("ParameterGroups", []) for p in g.get("Parameters", [])]
    labels = ui.get("ParameterLabels", {})
    out = [f"{p} is in no ParameterGroup" for p in sorted(params - set(grouped))]
    out += [f"{p} is in more than one ParameterGroup" for p in sorted({p for p in grouped if grouped.count(p) > 1})]
    out += [f"{p} has no ParameterLabel" for p in sorted(params - set(labels))]
    out += [f"the Interface names {p}, which is not a parameter" for p in sorted((set(grouped) | set(labels)) - params)]
    return out


def refusing_rules(template):
    r = Resolver(template)
    refused = []
    for name, rule in template.get("Rules", {}).items():
        if "RuleCondition" in rule and not r.resolve(rule["RuleCondition"]):
            continue
        if not all(r.resolve(a["Assert"]) for a in rule["Assertions"]):
            refused.append(name)
    return refused


def expand(template):
    if "AWS::Serverless-2016-10-31" not in str(template.get("Transform", "")):
        return template
    t = copy.deepcopy(template)
    for res in t["Resources"].values():
        if res.get("Type") == "AWS::Serverless::Function":
            # What `sam package` puts there: the translator accepts only an S3 location.
            res["Properties"]["CodeUri"] = "s3://bridgekeeper-artifacts/function.zip"
    values = {k: p.get("Default") for k, p in t.get("Parameters", {}).items()}
    os.environ.setdefault("AWS_DEFAULT_REGION", "eu-west-1")
    return transform(t, values, NoManagedPolicies())


def checkov(path):
    run = subprocess.run(
        [BIN / "checkov", "--compact", "--skip-download", "--framework",
         "cloudformation", "--output", "json", "--file", str(path)],
        capture_output=True, text=True)
    try:
        report = json.loads(run.stdout)
    except json.JSONDecodeError:
        return None, f"checkov did not report: {run.stderr.strip()[-400:]}"
    report = report[0] if isinstance(report, list) else report
    if report.get("summary", {}).get("parsing_errors"):
        return None, "checkov could not parse the template"
    return report, None


def skips_of(template):
    for name, res in template["Resources"].items():
        if not isinstance(res, dict):  # Fn::ForEach::<name>: [identifier, collection, fragment]
            continue
        for skip in res.get("Metadata", {}).get("checkov", {}).get("skip", []):
            yield name, skip.get("id"), (skip.get("comment") or "").strip()


def known_checks():
    out = subprocess.run([BIN / "checkov", "--list", "--framework", "cloudformation"],
                         capture_output=True, text=True).stdout
    return {w.strip("|").strip() for w in out.split() if w.strip("|").startswith("CKV")}


def schedule_findings(expanded):
    """Every schedule is an EventBridge Scheduler schedule read in the stack's time zone (the rules'
    ScheduleExpression is what AWS calls legacy, and is always UTC)."""
    out = []
    for name, res in expanded["Resources"].items():
        if not isinstance(res, dict):
            continue
        props = res.get("Properties", {})
        if res.get("Type") == "AWS::Events::Rule" and "ScheduleExpression" in props:
            out.append(f"{name}: a scheduled EventBridge rule; use ScheduleV2 (EventBridge Scheduler)")
        if res.get("Type") == "AWS::Scheduler::Schedule":
            if props.get("ScheduleExpressionTimezone") != {"Ref": "ScheduleTimezone"}:
                out.append(f"{name}: not read in ScheduleTimezone")
            if "DeadLetterConfig" not in props.get("Target", {}):
                out.append(f"{name}: no dead-letter queue")
    return out


def dashboard_findings(expanded):
    """A dashboard body is a JSON string CloudFormation only checks at deploy time."""
    out = []
    r = Resolver(expanded)
    sub = lambda text: re.sub(r"\$\{[^}]+\}", "x", text)  # noqa: E731
    for name, res in expanded["Resources"].items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::CloudWatch::Dashboard":
            continue
        parts = r.resolve(res["Properties"]["DashboardBody"]["Fn::Join"][1]) \
            if "Fn::Join" in res["Properties"]["DashboardBody"] else [res["Properties"]["DashboardBody"]]
        text = "".join(sub(p["Fn::Sub"]) if isinstance(p, dict) else p for p in parts)
        try:
            json.loads(text)
        except json.JSONDecodeError as e:
            out.append(f"{name}: DashboardBody is not JSON: {e}")
    return out


def main():
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "target/template-check"))
    args = ap.parse_args()
    out_dir = pathlib.Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    known = known_checks()
    member_source = yaml_parse((ROOT / "deploy/member/template.yaml").read_text())
    failures = []
    rows = []

    for path in templates():
        source = yaml_parse(path.read_text())
        rel = path.relative_to(ROOT)
        own = PARAMS if path == ROOT / "template.yaml" else PARAMS["templates"].get(rel.as_posix())
        if own is None:
            failures.append(f"{rel}: no parameter sets in tests/template/params.json 'templates'")
            continue
        sets = dict(own["accept"])
        if own is PARAMS:
            from_samconfig, found = samconfig_sets()
            sets.update(from_samconfig)
            failures += found
        if own is PARAMS:
            failures += [f"{rel}: {f}" for f in console_findings(source)]
        for name, rid, comment in skips_of(source):
            if rid not in known:
                failures.append(f"{rel}: {name} skips {rid}, which checkov does not have")
            if len(comment) < 20:
                failures.append(f"{rel}: {name} skips {rid} without a reason")

        for case, spec in own.get("reject", {}).items():
            t = with_values(source, spec["params"])
            if "rule" in spec and spec["rule"] not in refusing_rules(t):
                failures.append(f"{rel} [{case}]: rule {spec['rule']} does not refuse it")
            if "parameter" in spec and not any(f.startswith(spec["parameter"] + ":")
                                               for f in parameter_findings(t)):
                failures.append(f"{rel} [{case}]: parameter {spec['parameter']} accepts it")

        for case, params in sets.items():
            t = with_values(source, params)
            found = [f"{rel} [{case}]: {p}" for p in parameter_findings(t)]
            found += [f"{rel} [{case}]: rule {r} refuses an accepted set" for r in refusing_rules(t)]
            try:
                expanded = expand(t)
            except Exception as e:  # the translator's own validation errors
                failures.append(f"{rel} [{case}]: SAM transform failed: {e}")
                continue
            target = out_dir / f"{rel.as_posix().replace('/', '_')}.{case}.json"
            target.write_text(json.dumps(expanded, indent=1))

            lint = subprocess.run([BIN / "cfn-lint", "--format", "parseable", str(target)],
                                  capture_output=True, text=True)
            # cfn-lint's exit code is a bit mask: 2 errors, 4 warnings, 8 informational.
            if lint.returncode & 6 or lint.returncode == 1:
                found += [f"{rel} [{case}]: cfn-lint {line}" for line in lint.stdout.splitlines()]
                found += [f"{rel} [{case}]: cfn-lint {lint.stderr.strip()}"] if lint.stderr.strip() else []

            found += [f"{rel} [{case}]: {p}" for p in dashboard_findings(expanded)]
            found += [f"{rel} [{case}]: {p}" for p in schedule_findings(expanded)]

            report, err = checkov(target)
            if err:
                found.append(f"{rel} [{case}]: {err}")
            else:
                for c in report["results"]["failed_checks"]:
                    found.append(f"{rel} [{case}]: checkov {c['check_id']} fails on {c['resource']}: {c['check_name']}")
                # The same template without its skips: each skip must hide a real failure.
                bare = copy.deepcopy(expanded)
                for res in bare["Resources"].values():
                    if isinstance(res, dict):
                        res.get("Metadata", {}).pop("checkov", None)
                bare_path = target.with_suffix(".noskips.json")
                bare_path.write_text(json.dumps(bare, indent=1))
                bare_report, err = checkov(bare_path)
                failing = {(c["resource"].split(".", 1)[1], c["check_id"])
                           for c in (bare_report or {"results": {"failed_checks": []}})["results"]["failed_checks"]}
                for c in report["results"]["skipped_checks"]:
                    res = c["resource"].split(".", 1)[1]
                    if (res, c["check_id"]) not in failing:
                        found.append(f"{rel} [{case}]: {res} skips {c['check_id']}, which passes without the skip")
            # Would AWS allow it: every access path, evaluated against these policies.
            if own is PARAMS:
                access, paths = check_hub(expanded, params, member_source, case)
            else:
                access, paths = check_member(expanded, params, f"{rel} [{case}]")
            found += access
            rows.append((str(rel), case, len(expanded["Resources"]), paths,
                         "ok" if not found else f"{len(found)} finding(s)"))
            failures += found

    print(f"{'template':<28} {'parameter set':<34} {'resources':>9} {'access paths':>12}  result")
    for r in rows:
        print(f"{r[0]:<28} {r[1]:<34} {r[2]:>9} {r[3]:>12}  {r[4]}")
    refused = len(PARAMS["reject"]) + sum(len(t.get("reject", {})) for t in PARAMS["templates"].values())
    print(f"rules: {refused} refused sets checked")
    if failures:
        print("\n".join(["", "template-check: FAILED"] + failures))
        return 1
    print("template-check: ok (expanded templates in " + str(out_dir.relative_to(ROOT)) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
