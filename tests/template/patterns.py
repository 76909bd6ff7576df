#!/usr/bin/env python3
"""Prints the EventBridge rule patterns of a template as CloudFormation would create them.

The template is expanded by the SAM translator (SAM `EventBridgeRule` events become
`AWS::Events::Rule`), then Conditions, `Fn::If`, `Ref` to parameters and `AWS::NoValue` are
resolved with the given parameter values. Output: a JSON object, rule logical id -> its
EventPattern, for rules whose condition holds and that have a pattern (schedules have none).

Usage: patterns.py TEMPLATE [PARAMS_JSON]   (used by tests/tests/rule_patterns.rs)
"""

import json
import logging
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from check import expand, with_values  # noqa: E402
from intrinsics import Resolver  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

def patterns(template_path, params):
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    t = with_values(yaml_parse(pathlib.Path(template_path).read_text()), params)
    expanded = expand(t)
    r = Resolver(expanded)
    out = {}
    for name, res in expanded["Resources"].items():
        if not isinstance(res, dict) or res.get("Type") != "AWS::Events::Rule":
            continue
        if "Condition" in res and not r.condition(res["Condition"]):
            continue
        pattern = res.get("Properties", {}).get("EventPattern")
        if pattern is not None:
            out[name] = r.resolve(pattern)
    return out


if __name__ == "__main__":
    params = json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(patterns(sys.argv[1], params), indent=1, sort_keys=True))
