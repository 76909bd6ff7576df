"""The reference policy of `make policy-check`: an identity policy allowing every action the
access maps list (functions/*/access.json), on any resource. IAM Access Analyzer's
check-no-new-access then reports any policy of a template that grants more."""

import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
actions = set()
for path in sorted((ROOT / "functions").glob("*/access.json")):
    m = json.loads(path.read_text())
    actions |= {e["action"] for e in m["calls"] if e.get("expect", "Allowed") == "Allowed"}
    actions |= set(m.get("lambda", []))
    section = m.get("export_role", {})
    actions |= {e["action"] for e in section.get("calls", []) if e.get("expect", "Allowed") == "Allowed"}
    actions |= set(section.get("granted", []))
print(json.dumps({"Version": "2012-10-17",
                  "Statement": [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]}, indent=1))
