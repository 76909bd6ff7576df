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
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

NO_VALUE = object()


class Resolver:
    def __init__(self, template):
        self.params = {k: p.get("Default", "") for k, p in template.get("Parameters", {}).items()}
        self.types = {k: p.get("Type") for k, p in template.get("Parameters", {}).items()}
        self.conditions = template.get("Conditions", {})
        self.cache = {}

    def ref(self, name):
        if name == "AWS::NoValue":
            return NO_VALUE
        if name == "AWS::Region":
            return "eu-west-1"
        if name == "AWS::AccountId":
            return "123456789012"
        if name not in self.params:
            raise KeyError(f"Ref {name} is not a parameter")
        v = str(self.params[name])
        return [x.strip() for x in v.split(",")] if self.types[name] == "CommaDelimitedList" else v

    def condition(self, name):
        if name not in self.cache:
            self.cache[name] = bool(self.resolve(self.conditions[name]))
        return self.cache[name]

    def resolve(self, node):
        if isinstance(node, list):
            out = [self.resolve(n) for n in node]
            return [n for n in out if n is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                a, b = self.resolve(arg[0]), self.resolve(arg[1])
                return a == b
            if key == "Fn::Not":
                return not self.resolve(arg[0])
            if key == "Fn::And":
                return all(self.resolve(a) for a in arg)
            if key == "Fn::Or":
                return any(self.resolve(a) for a in arg)
            if key == "Fn::Join":
                return arg[0].join(str(x) for x in self.resolve(arg[1]))
            if key == "Fn::Sub" and isinstance(arg, str):
                return {"Fn::Sub": arg}
            if key.startswith("Fn::"):
                raise ValueError(f"{key} is not resolved by patterns.py")
        out = {k: self.resolve(v) for k, v in node.items()}
        return {k: v for k, v in out.items() if v is not NO_VALUE}


def patterns(template_path, params):
    logging.getLogger("samtranslator").setLevel(logging.ERROR)
    t = with_values(yaml_parse(pathlib.Path(template_path).read_text()), params)
    expanded = expand(t)
    r = Resolver(expanded)
    out = {}
    for name, res in expanded["Resources"].items():
        if res.get("Type") != "AWS::Events::Rule":
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
