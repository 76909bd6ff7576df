"""deploy/guided.py (`make deploy`): eight answers become a samconfig.toml entry the template
accepts as it deploys (parameters, Rules, the SAM transform), other entries and comments kept;
a refused answer writes nothing. Run by `make template-check`."""

import contextlib
import io
import logging
import pathlib
import shlex
import sys
import tempfile
import tomllib
import unittest
from unittest import mock

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "deploy"))
import guided  # noqa: E402
from check import expand, parameter_findings, refusing_rules, with_values  # noqa: E402
from samtranslator.yaml_helper import yaml_parse  # noqa: E402

ANSWERS = "\n".join([
    "staging", "eu-central-1", "ops@example.com", "staging-eks,tools-eks",
    "Z0STAGING000000000000=staging.example.com", "db:orders-db,cluster:payments-aurora",
    "staging shop,web", "Europe/Berlin",
]) + "\n"


def run(answers, samconfig):
    out, err = io.StringIO(), io.StringIO()
    with mock.patch("sys.stdin", io.StringIO(answers)), contextlib.redirect_stdout(out), \
            contextlib.redirect_stderr(err):
        code = guided.main(["--samconfig", str(samconfig), "--no-deploy"])
    return code, out.getvalue(), err.getvalue()


class GuidedDeploy(unittest.TestCase):
    def test_eight_answers_make_an_entry_the_template_accepts(self):
        logging.getLogger("samtranslator").setLevel(logging.ERROR)
        self.assertEqual(len(guided.QUESTIONS), 8)
        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / "samconfig.toml"
            path.write_text((ROOT / "samconfig.toml").read_text())
            code, out, err = run(ANSWERS, path)
            self.assertEqual(code, 0, err)
            self.assertIn("next: sam deploy --config-env staging", out)
            text = path.read_text()
            self.assertIn("# No default stack", text, "comments kept")
            conf = tomllib.loads(text)
            self.assertIn("bridgekeeper-prod", conf["prod"]["deploy"]["parameters"]["stack_name"], "other entries kept")
            entry = conf["staging"]["deploy"]["parameters"]
        self.assertEqual((entry["stack_name"], entry["region"]), ("bridgekeeper-staging", "eu-central-1"))
        params = dict(kv.split("=", 1) for kv in shlex.split(entry["parameter_overrides"]))
        self.assertEqual(params["ScheduleTimezone"], "Europe/Berlin")
        self.assertEqual(params["SnapshotExportDbInstances"], "orders-db")
        self.assertEqual(params["SnapshotExportDbClusters"], "payments-aurora")
        self.assertEqual(params["DnsSyncClusters"], "staging-eks=staging-eks,tools-eks=tools-eks")
        self.assertIn('"namespaces": ["shop", "web"]', params["ImageRolloutRules"])
        t = with_values(yaml_parse((ROOT / "template.yaml").read_text()), params)
        self.assertEqual(parameter_findings(t), [])
        self.assertEqual(refusing_rules(t), [])
        expanded = expand(t)
        self.assertIn("DnsSyncFunction", expanded["Resources"])
        self.assertIn("ImageRolloutFunction", expanded["Resources"])

    def test_blank_answers_deploy_the_exports_and_alerts_only(self):
        with tempfile.TemporaryDirectory() as d:
            path = pathlib.Path(d) / "samconfig.toml"
            code, _, err = run("\n" * 8, path)
            self.assertEqual(code, 0, err)
            entry = tomllib.loads(path.read_text())["dev"]["deploy"]["parameters"]
        params = dict(kv.split("=", 1) for kv in shlex.split(entry["parameter_overrides"]))
        self.assertEqual(params, {"Environment": "dev", "ScheduleTimezone": "UTC",
                                  "SnapshotExportSourceTag": "bridgekeeper:export=dev"})

    def test_a_refused_answer_says_why_and_writes_nothing(self):
        for answers, why in [
            (ANSWERS.replace("Europe/Berlin", "Mars/Olympus Mons"), "ScheduleTimezone"),
            (ANSWERS.replace("Z0STAGING000000000000=staging.example.com", "staging.example.com"), "ZONE-ID=domain"),
            (ANSWERS.replace("staging\n", "qa\n", 1), "Environment"),
        ]:
            with tempfile.TemporaryDirectory() as d:
                path = pathlib.Path(d) / "samconfig.toml"
                code, _, err = run(answers, path)
                self.assertEqual(code, 2)
                self.assertIn(why, err)
                self.assertFalse(path.exists())


if __name__ == "__main__":
    unittest.main()
