"""deploy/local_env.py against moto: a stack with two functions becomes SAM's env-vars file,
keyed by logical id, with each function's deployed variables and nothing Lambda sets itself."""
import io
import json
import sys
import unittest
import zipfile
from pathlib import Path

import boto3
from moto import mock_aws

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
import local_env  # noqa: E402


def code() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("bootstrap", "#!/bin/sh\n")
    return buf.getvalue()


@mock_aws
class LocalEnvTest(unittest.TestCase):
    def test_each_functions_deployed_variables_keyed_by_logical_id(self):
        region = "eu-west-1"
        role = boto3.client("iam", region_name=region).create_role(
            RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
        s3 = boto3.client("s3", region_name=region)
        s3.create_bucket(Bucket="code", CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_object(Bucket="code", Key="fn.zip", Body=code())

        def function(variables):
            return {"Type": "AWS::Lambda::Function", "Properties": {
                "Runtime": "provided.al2023", "Handler": "bootstrap", "Role": role,
                "Code": {"S3Bucket": "code", "S3Key": "fn.zip"},
                "Environment": {"Variables": variables}}}

        template = {"Resources": {
            "SnapshotExportFunction": function({"ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts",
                                                "AWS_LAMBDA_LOG_FORMAT": "JSON"}),
            "DnsSyncFunction": function({"ZONE_IDS": "Z1", "LOCAL_ENDPOINT_URL": ""}),
            "Queue": {"Type": "AWS::SQS::Queue"},
        }}
        cfn = boto3.client("cloudformation", region_name=region)
        cfn.create_stack(StackName="bk", TemplateBody=json.dumps(template))
        resources = cfn.list_stack_resources(StackName="bk")["StackResourceSummaries"]
        lam = boto3.client("lambda", region_name=region)
        files = local_env.env_vars(resources, lambda n: lam.get_function_configuration(FunctionName=n))
        self.assertEqual(files, {
            "SnapshotExportFunction": {"ALERTS_TOPIC_ARN": "arn:aws:sns:eu-west-1:123456789012:alerts"},
            "DnsSyncFunction": {"LOCAL_ENDPOINT_URL": "", "ZONE_IDS": "Z1"},
        })

    def test_a_stack_without_functions_is_named(self):
        with self.assertRaises(SystemExit) as e:
            local_env.env_vars([{"ResourceType": "AWS::SQS::Queue"}], lambda n: {})
        self.assertIn("no Lambda functions", str(e.exception))


if __name__ == "__main__":
    unittest.main()
