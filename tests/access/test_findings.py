"""The findings of the "AWS would allow it" review, each put back into the templates: the access
check must fail on every one (a check that passes them would prove nothing). Run by
`make template-check`:   python -m unittest tests/access/test_findings.py
"""

import logging
import pathlib
import sys
import unittest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "template"))
from check import PARAMS, expand, with_values  # noqa: E402
from evaluate import check_hub  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

ROOT = HERE.parents[1]
SET = "many-accounts-every-feature"

# (finding, template, what the fix wrote, what was there before, a phrase the check must report,
#  and any further (template, fix, before) the same finding needs put back)
PUT_BACK = [
    ("1: the export key does not admit the members' roles", "template.yaml",
     "              Action: kms:CreateGrant\n              Resource: \"*\"\n              Condition:\n"
     "                ArnLike: { aws:PrincipalArn: !Sub \"arn:${AWS::Partition}:iam::*:role/${MemberRolePrefix}-snapshot-export-${AWS::Region}\" }",
     "              Action: kms:CreateGrant\n              Resource: \"*\"\n              Condition:\n"
     "                ArnLike: { aws:PrincipalArn: !Sub \"arn:${AWS::Partition}:iam::*:role/${MemberRolePrefix}-snapshot-export\" }",
     "kms:CreateGrant on arn:aws:kms:"),
    ("2: member role names fixed per account", "deploy/member/template.yaml",
     'RoleName: !Sub "${RolePrefix}-dns-sync-${AWS::Region}"', 'RoleName: !Sub "${RolePrefix}-dns-sync"',
     "in every region"),
    ("3: a rule's dead-letter queue does not admit it", "template.yaml",
     "                  - !GetAtt NodeStateEventsRule.Arn\n", "",
     "rule NodeStateEventsRule sends undeliverable events"),
    ("3: a schedule's role trusts any schedule of the account", "template.yaml",
     "              ArnLike:\n                aws:SourceArn:\n"
     "                  - !Sub \"arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${SnapshotExportSchedules}/*\"\n"
     "                  - !Sub \"arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${ScalingAlertsSchedules}/*\"\n"
     "                  - !If [ImageRolloutEnabled, !Sub \"arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${ImageRolloutSchedules}/*\", !Ref AWS::NoValue]\n"
     "                  - !If [DnsSyncEnabled, !Sub \"arn:${AWS::Partition}:scheduler:${AWS::Region}:${AWS::AccountId}:schedule/${DnsSyncSchedules}/*\", !Ref AWS::NoValue]\n",
     "", "for a schedule not the stack's: AWS would allow it"),
    ("3: a schedule cannot keep an undelivered run", "template.yaml",
     "              - Sid: KeepUndeliveredRuns\n                Effect: Allow\n                Action: sqs:SendMessage",
     "              - Sid: KeepUndeliveredRuns\n                Effect: Allow\n                Action: sqs:ReceiveMessage",
     "keeps an undelivered run in its dead-letter queue: AWS would refuse it",
     ("template.yaml", "            Principal: { AWS: !GetAtt SchedulerRole.Arn }\n            Action: sqs:SendMessage",
      "            Principal: { AWS: !GetAtt SchedulerRole.Arn }\n            Action: sqs:ReceiveMessage")),
    ("4: the bus statement id built from the stack name", "template.yaml",
     'StatementId: !Sub\n        - "bridgekeeper-${Id}"\n        - Id: !Select [2, !Split ["/", !Ref AWS::StackId]]',
     'StatementId: !Sub "${AWS::StackName}-members"', "StatementId is"),
    ("5: node access entries allowed", "template.yaml", "                    eks:accessEntryType: STANDARD\n", "",
     "eks:CreateAccessEntry on"),
    ("5: any record type, any action", "template.yaml",
     "                  route53:ChangeResourceRecordSetsRecordTypes: [A, AAAA, CNAME, TXT]\n", "",
     "route53:ChangeResourceRecordSets on"),
    ("5: tag mode exports any snapshot", "template.yaml",
     '                    aws:ResourceTag/bridgekeeper:export: !Select [1, !Split ["=", !Ref SnapshotExportSourceTag]]',
     '                    aws:RequestedRegion: !Ref AWS::Region', "rds:StartExportTask on"),
    ("5: any alarm of the account posts as Bridgekeeper", "template.yaml",
     '              ArnLike: { aws:SourceArn: !Sub "arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:${AWS::StackName}-*" }\n',
     "", "an alarm not of this stack publishes"),
    # Both sides hold this condition (bucket policy and the member's role): both put back.
    ("5: a member lists the whole bucket", "template.yaml",
     '                StringLike: { s3:prefix: "rds-exports/${aws:PrincipalAccount}/*" }\n', "",
     "s3:ListBucket on", ("deploy/member/template.yaml",
                          '                Condition:\n                  StringLike: { s3:prefix: !Sub "${ExportPrefix}/${AWS::AccountId}/*" }\n', "")),
    ("6: a member's scaling-alerts role cannot find the clusters whose Events it reads", "deploy/member/template.yaml",
     "                - ScalingAlertsEvents\n                - Sid: FindTheClusters\n                  Effect: Allow\n"
     "                  Action: eks:DescribeCluster",
     "                - ScalingAlertsEvents\n                - Sid: FindTheClusters\n                  Effect: Allow\n"
     "                  Action: eks:ListClusters",
     "eks:DescribeCluster on arn:aws:eks:eu-west-1:222222222222:cluster/staging-eks"),
    ("5: the forwarding role trusts any rule of the account", "deploy/member/template.yaml",
     '              ArnLike: { aws:SourceArn: !Sub "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:rule/${RolePrefix}-forward-*" }\n',
     "", "for a rule not the stack's"),
]


class PuttingAFindingBackFailsTheCheck(unittest.TestCase):
    def test_each_finding(self):
        logging.getLogger("samtranslator").setLevel(logging.ERROR)
        sources = {p: (ROOT / p).read_text() for p in ("template.yaml", "deploy/member/template.yaml")}
        params = PARAMS["accept"][SET]
        for finding, path, fixed, before, phrase, *also in PUT_BACK:
            with self.subTest(finding):
                texts = dict(sources)
                for path, fixed, before in [(path, fixed, before), *also]:
                    self.assertIn(fixed, texts[path], f"the fix of finding {finding} is no longer in {path}")
                    texts[path] = texts[path].replace(fixed, before)
                hub = expand(with_values(yaml_parse(texts["template.yaml"]), params))
                found, _ = check_hub(hub, params, yaml_parse(texts["deploy/member/template.yaml"]), SET)
                self.assertTrue(any(phrase in f for f in found),
                                f"finding {finding} put back, and the check does not report {phrase!r}: {found[:3]}")


if __name__ == "__main__":
    unittest.main()
