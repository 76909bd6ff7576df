"""`make publish`: Bridgekeeper in the Serverless Application Repository.

After `sam build`, the built template gets the repository's address as SourceCodeUrl and
HomePageUrl (from `git remote get-url origin`, or SOURCE_URL; SAR's metadata takes no intrinsics,
so it cannot live in template.yaml), and the licence and README by absolute path (`sam package`
resolves them against the template it reads, which is the built one); then `sam package` uploads
code, licence and README, and `sam publish` creates the application or its new version.

    .venv/sam/bin/python deploy/publish.py [--prepare-only]
"""

import argparse
import os
import pathlib
import re
import subprocess
import sys

from samcli.yamlhelper import yaml_dump, yaml_parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILT = ROOT / ".aws-sam/build/template.yaml"
OUT = ROOT / "target/publish"
KEY = "AWS::ServerlessRepo::Application"


def https(remote):
    """A public https address for a git remote (`git@github.com:o/r.git` too)."""
    m = re.fullmatch(r"git@([^:]+):(.+?)(\.git)?", remote.strip())
    url = f"https://{m.group(1)}/{m.group(2)}" if m else remote.strip().removesuffix(".git")
    if not re.fullmatch(r"https://[^\s/]+/\S+", url):
        raise SystemExit(f"publish: {remote!r} is not a public https repository address; set SOURCE_URL")
    return url


def source_url():
    if os.environ.get("SOURCE_URL"):
        return https(os.environ["SOURCE_URL"])
    got = subprocess.run(["git", "remote", "get-url", "origin"], cwd=ROOT, capture_output=True, text=True)
    if got.returncode:
        raise SystemExit("publish: no git remote 'origin'; set SOURCE_URL to the public repository")
    return https(got.stdout)


def prepare(built, out_dir, url):
    template = yaml_parse(built.read_text())
    meta = template["Metadata"][KEY]
    meta["SourceCodeUrl"] = meta["HomePageUrl"] = url
    for prop in ("LicenseUrl", "ReadmeUrl"):
        meta[prop] = str((ROOT / meta[prop]).resolve())
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / "template.yaml"
    target.write_text(yaml_dump(template))
    return target


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prepare-only", action="store_true", help="write target/publish/template.yaml only")
    args = ap.parse_args(argv)
    if not BUILT.is_file():
        raise SystemExit("publish: run `sam build` first (make publish does)")
    template = prepare(BUILT, OUT, source_url())
    print(f"publish: {template.relative_to(ROOT)} with SourceCodeUrl and HomePageUrl set")
    if args.prepare_only:
        return 0
    packaged = OUT / "packaged.yaml"
    for command in (["sam", "package", "--template-file", str(template), "--output-template-file",
                     str(packaged), "--resolve-s3"],
                    ["sam", "publish", "--template", str(packaged)]):
        print("$ " + " ".join(command), flush=True)
        if subprocess.run(command, cwd=ROOT).returncode:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
