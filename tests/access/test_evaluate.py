"""The evaluation the access check relies on, against the cases of AWS's "Policy evaluation logic"
(IAM User Guide: reference_policies_evaluation-logic, -cross-account, and the KMS and STS
specifics): run by `make template-check` before the check itself, so a simulator that stopped
answering as AWS does fails loudly rather than passing everything.

    python -m unittest tests/access/test_evaluate.py
"""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from evaluate import evaluate  # noqa: E402

A, B = "111111111111", "222222222222"
ROLE = f"arn:aws:iam::{A}:role/app"
SESSION = f"arn:aws:sts::{A}:assumed-role/app/s"
BUCKET = "arn:aws:s3:::shared-bucket/key"


def allow(action, resource, **cond):
    st = {"Effect": "Allow", "Action": action, "Resource": resource}
    if cond:
        st["Condition"] = cond
    return st


def request(action, resource, owner, identity, resource_policy=None, **context):
    ctx = {"aws:PrincipalArn": ROLE, "aws:PrincipalAccount": A}
    ctx.update(context)
    sim = {"request": {"action": action, "principal": SESSION,
                       "resource": {"resource": resource, "accountId": owner}, "contextVariables": ctx},
           "identityPolicies": [{"name": "p", "policy": {"Version": "2012-10-17", "Statement": identity}}]}
    if resource_policy is not None:
        sim["resourcePolicy"] = {"Version": "2012-10-17", "Statement": resource_policy}
    return sim


class PolicyEvaluationLogic(unittest.TestCase):
    def decide(self, sim, expected):
        return evaluate([("case", sim, expected)])

    def test_same_account_identity_policy_alone_allows(self):
        sim = request("s3:GetObject", BUCKET, A, [allow("s3:GetObject", "arn:aws:s3:::shared-bucket/*")])
        self.assertEqual(self.decide(sim, "Allowed"), [])

    def test_nothing_allows_so_it_is_implicitly_denied(self):
        sim = request("s3:PutObject", BUCKET, A, [allow("s3:GetObject", "*")])
        self.assertEqual(self.decide(sim, "Denied"), [])

    def test_an_explicit_deny_in_any_policy_wins(self):
        deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Resource": "*",
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}}
        sim = request("s3:GetObject", BUCKET, A, [allow("s3:*", "*")], [deny], **{"aws:SecureTransport": "false"})
        self.assertEqual(self.decide(sim, "Denied"), [])

    def test_cross_account_needs_the_resource_policy_too(self):
        sim = request("s3:GetObject", BUCKET, B, [allow("s3:GetObject", "*")])
        self.assertEqual(self.decide(sim, "Denied"), [])
        admit = {"Effect": "Allow", "Principal": {"AWS": A}, "Action": "s3:GetObject", "Resource": BUCKET}
        sim = request("s3:GetObject", BUCKET, B, [allow("s3:GetObject", "*")], [admit])
        self.assertEqual(self.decide(sim, "Allowed"), [])

    def test_cross_account_needs_the_identity_policy_too(self):
        admit = {"Effect": "Allow", "Principal": {"AWS": A}, "Action": "s3:GetObject", "Resource": BUCKET}
        sim = request("s3:GetObject", BUCKET, B, [], [admit])
        self.assertEqual(self.decide(sim, "Denied"), [])

    def test_a_kms_key_policy_without_the_account_refuses_even_its_own_account(self):
        key = f"arn:aws:kms:eu-west-1:{A}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        other = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:role/admin"},
                 "Action": "kms:*", "Resource": "*"}
        sim = request("kms:Decrypt", key, A, [allow("kms:Decrypt", key)], [other])
        self.assertEqual(self.decide(sim, "Denied"), [])
        root = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{A}:root"}, "Action": "kms:*", "Resource": "*"}
        sim = request("kms:Decrypt", key, A, [allow("kms:Decrypt", key)], [root])
        self.assertEqual(self.decide(sim, "Allowed"), [])

    def test_a_trust_policy_demands_its_external_id(self):
        role = f"arn:aws:iam::{B}:role/member"
        trust = {"Effect": "Allow", "Principal": {"AWS": ROLE}, "Action": "sts:AssumeRole",
                 "Condition": {"StringEquals": {"sts:ExternalId": "right"}}}
        ok = request("sts:AssumeRole", role, B, [allow("sts:AssumeRole", role)], [trust],
                     **{"sts:ExternalId": "right"})
        wrong = request("sts:AssumeRole", role, B, [allow("sts:AssumeRole", role)], [trust],
                        **{"sts:ExternalId": "wrong"})
        self.assertEqual(self.decide(ok, "Allowed") + self.decide(wrong, "Denied"), [])

    def test_for_all_values_holds_only_when_every_value_is_allowed(self):
        zone = "arn:aws:route53:::hostedzone/Z1"
        st = allow("route53:ChangeResourceRecordSets", zone, **{
            "ForAllValues:StringEquals": {"route53:ChangeResourceRecordSetsRecordTypes": ["A", "TXT"]}})
        good = request("route53:ChangeResourceRecordSets", zone, A, [st],
                       **{"route53:ChangeResourceRecordSetsRecordTypes": ["A", "TXT"]})
        bad = request("route53:ChangeResourceRecordSets", zone, A, [st],
                      **{"route53:ChangeResourceRecordSetsRecordTypes": ["A", "NS"]})
        self.assertEqual(self.decide(good, "Allowed") + self.decide(bad, "Denied"), [])

    def test_a_finding_names_the_request_when_expectation_fails(self):
        sim = request("s3:PutObject", BUCKET, A, [allow("s3:GetObject", "*")])
        found = evaluate([("the case", sim, "Allowed")])
        self.assertEqual(len(found), 1)
        self.assertIn("the case: AWS would refuse it", found[0])


if __name__ == "__main__":
    unittest.main()
