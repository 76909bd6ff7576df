"""The guardrail README "Multi-tenant clusters" offers for snapshot-export's selection tag:
deploy/guardrails/export-tag-scp.json, evaluated as an SCP with IAM's logic. Whoever may tag a
database may otherwise have its whole content exported into the central bucket.

RDS authorizes tags given at creation (CreateDBInstance, CreateDBCluster, restores) as
rds:AddTagsToResource too ("Grant permission to tag Amazon RDS resources during creation", RDS
User Guide), so denying that action with aws:TagKeys covers tagging on create as well.

    python -m unittest tests/access/test_guardrails.py
"""

import json
import pathlib
import sys
import unittest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(pathlib.Path(__file__).parent))
from evaluate import evaluate  # noqa: E402

ACCOUNT = "333333333333"
DB = f"arn:aws:rds:eu-west-1:{ACCOUNT}:db:orders"
SCP = json.loads((ROOT / "deploy/guardrails/export-tag-scp.json").read_text())
FULL_ACCESS = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
DEVELOPER = f"arn:aws:iam::{ACCOUNT}:role/developer"
ADMIN = f"arn:aws:iam::{ACCOUNT}:role/platform-admin"
SSO_ADMIN = f"arn:aws:iam::{ACCOUNT}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_AdministratorAccess_0123abcd"


def tagging(role, action, keys):
    ctx = {"aws:PrincipalArn": role, "aws:PrincipalAccount": ACCOUNT, "aws:TagKeys": keys}
    if action == "rds:AddTagsToResource":
        ctx.update({f"aws:RequestTag/{k}": "prod" for k in keys})
    return {
        "request": {"action": action, "principal": f"{role.replace(':iam:', ':sts:').replace(':role/', ':assumed-role/')}/s",
                    "resource": {"resource": DB, "accountId": ACCOUNT}, "contextVariables": ctx},
        # The developer may do anything with RDS: the SCP alone must hold the line.
        "identityPolicies": [{"name": "rds", "policy": {"Version": "2012-10-17", "Statement": [
            {"Effect": "Allow", "Action": "rds:*", "Resource": "*"}]}}],
        "serviceControlPolicies": [{"orgIdentifier": "r-root", "policies": [
            {"name": "FullAWSAccess", "policy": FULL_ACCESS}, {"name": "export-tag", "policy": SCP}]}],
    }


class ExportTagGuardrail(unittest.TestCase):
    def test_a_developer_cannot_tag_a_database_for_export_nor_untag_it(self):
        cases = [
            ("developer adds the tag", tagging(DEVELOPER, "rds:AddTagsToResource", ["bridgekeeper:export"]), "Denied"),
            ("developer adds it among others", tagging(DEVELOPER, "rds:AddTagsToResource", ["team", "bridgekeeper:export"]), "Denied"),
            ("developer removes it", tagging(DEVELOPER, "rds:RemoveTagsFromResource", ["bridgekeeper:export"]), "Denied"),
            ("developer's other tags", tagging(DEVELOPER, "rds:AddTagsToResource", ["team"]), "Allowed"),
        ]
        self.assertEqual(evaluate(cases), [])

    def test_the_platform_admins_still_choose(self):
        cases = [
            ("platform-admin", tagging(ADMIN, "rds:AddTagsToResource", ["bridgekeeper:export"]), "Allowed"),
            ("SSO administrator", tagging(SSO_ADMIN, "rds:AddTagsToResource", ["bridgekeeper:export"]), "Allowed"),
        ]
        self.assertEqual(evaluate(cases), [])


if __name__ == "__main__":
    unittest.main()
