"""`make sam-local`: every sample event in events/ through `sam local invoke`, in a container
that runs AWS's Lambda Runtime Interface Emulator (shipped in the SAM CLI package), against
fresh stand-ins; each result is checked (see checks.py). Run by .ci/run.

    .venv/sam/bin/python tests/samlocal/run.py [FILE ...]    # all of events/, or the files given
    .venv/sam/bin/python tests/samlocal/run.py --prepare     # make sam-layout: the layout and image only

What it does, and undoes:
- Docker: uses the engine that answers; else, as root, starts `dockerd` (installing Debian's
  pinned docker.io first when it is missing) and stops it at the end, by pid. Without a way to
  get an engine it fails and says how: it never passes without having invoked anything.
- The image: public.ecr.aws/lambda/provided:al2023 when it is here or can be pulled; else a
  small local one (`docker import`): a shell, the host's glibc, a CA bundle at AL2023's path.
  SAM adds the emulator on top of it.
- The functions: the binaries `make bins` built (target/debug), laid out as `sam build` lays
  them out (target/sam-local/build/<LogicalId>/bootstrap) with the template pointing at them,
  Architecture set to this machine's. `make package` stays the real `sam build`.
- The stand-ins: moto and kmock on free ports of the Docker bridge's address, seeded as
  `make standins` seeds them, stopped at the end.
"""
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/standins"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import checks  # noqa: E402
import up  # noqa: E402

WORK = ROOT / "target/sam-local"
SAM = ROOT / ".venv/sam/bin/sam"
AWS_IMAGE = "public.ecr.aws/lambda/provided:al2023"
LOCAL_IMAGE = "bridgekeeper-local/provided:al2023"
# Debian bookworm's docker.io, the version this target was written against.
DOCKER_IO = "docker.io=20.10.24+dfsg1-1+deb12u1+b6"
ARCH = {"x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine()]
AL2023_BUNDLE = "/etc/pki/tls/certs/ca-bundle.crt"


def log(msg: str) -> None:
    print(msg, flush=True)


def fail(msg: str) -> None:
    sys.exit(f"make sam-local: {msg}")


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, text=True, capture_output=True, **kw)


# -- Docker ----------------------------------------------------------------------------------

def engine_answers() -> bool:
    return shutil.which("docker") is not None and run(["docker", "info"]).returncode == 0


def start_engine() -> subprocess.Popen | None:
    """`None` when an engine already answers; the dockerd started otherwise."""
    if engine_answers():
        return None
    how = ("install Docker (Debian: apt-get install docker.io, then start dockerd as root; "
           "elsewhere Docker Desktop or Docker Engine) and run make sam-local again")
    if os.geteuid() != 0:
        fail(f"no Docker engine answers and this user cannot start one: {how}")
    if shutil.which("dockerd") is None:
        if shutil.which("apt-get") is None:
            fail(f"no Docker engine here: {how}")
        log(f"installing {DOCKER_IO} (Debian's package)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        got = run(["apt-get", "install", "-y", "--no-install-recommends", DOCKER_IO], env=env)
        if got.returncode != 0:
            fail(f"apt-get could not install {DOCKER_IO}: {got.stderr.strip()[-400:]}; {how}")
    WORK.mkdir(parents=True, exist_ok=True)
    logfile = open(WORK / "dockerd.log", "w")
    daemon = subprocess.Popen(["dockerd"], stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True)
    for _ in range(60):
        if engine_answers():
            log(f"started dockerd (pid {daemon.pid}); stopped at the end")
            return daemon
        if daemon.poll() is not None:
            break
        time.sleep(0.5)
    daemon.terminate()
    fail(f"dockerd did not come up (see {WORK / 'dockerd.log'}): {how}")


def stop_engine(daemon: subprocess.Popen | None) -> None:
    if daemon is None:
        return
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=30)
    except subprocess.TimeoutExpired:
        daemon.kill()


# -- the image -------------------------------------------------------------------------------

def have_image(name: str) -> bool:
    return run(["docker", "image", "inspect", name]).returncode == 0


def libraries(binaries: list[Path]) -> set[str]:
    """What the dynamic loader maps for `binaries` (ldd), the loader itself included."""
    libs = set()
    for b in binaries:
        for line in run(["ldd", str(b)]).stdout.splitlines():
            parts = line.split()
            path = parts[2] if "=>" in parts and len(parts) > 2 else parts[0]
            if path.startswith("/"):
                libs.add(path)
    return libs


def local_image(binaries: list[Path]) -> str:
    """A stand-in for provided.al2023 built from this machine: /bin/sh and the few tools SAM's
    Dockerfile runs (mv, chmod, cp, rm), the libraries they and the functions load, and the host's
    CA bundle at AL2023's path. Rebuilt when its inputs change (the label holds their hash)."""
    tools = [Path(shutil.which(t)) for t in ("sh", "mv", "chmod", "cp", "rm", "mkdir")]
    libs = sorted(libraries(tools + binaries))
    bundle = next(p for p in ("/etc/ssl/certs/ca-certificates.crt", AL2023_BUNDLE) if Path(p).exists())
    inputs = [str(t.resolve()) for t in tools] + libs + [bundle]
    stamp = hashlib.sha256("\n".join(inputs).encode() + b"".join(Path(p).read_bytes() for p in inputs)).hexdigest()[:16]
    got = run(["docker", "image", "inspect", "-f", "{{index .Config.Labels \"inputs\"}}", LOCAL_IMAGE])
    if got.returncode == 0 and got.stdout.strip() == stamp:
        return LOCAL_IMAGE
    rootfs = Path(tempfile.mkdtemp(prefix="rootfs-", dir=WORK))
    try:
        for d in ("bin", "tmp", "var/task", "var/runtime", "opt", "etc/pki/tls/certs"):
            (rootfs / d).mkdir(parents=True, exist_ok=True)
        (rootfs / "tmp").chmod(0o1777)
        for t in tools:
            shutil.copy2(t.resolve(), rootfs / "bin" / t.name)
        for lib in libs:
            dest = rootfs / lib.lstrip("/")
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(lib).resolve(), dest)
        shutil.copy2(bundle, rootfs / AL2023_BUNDLE.lstrip("/"))
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        imported = run(["docker", "import", "--change", f"LABEL inputs={stamp}",
                        "--change", "ENV PATH=/bin", "-", LOCAL_IMAGE], stdin=tar.stdout)
        tar.wait()
        if imported.returncode != 0:
            fail(f"docker import failed: {imported.stderr.strip()}")
    finally:
        shutil.rmtree(rootfs, ignore_errors=True)
    log(f"built {LOCAL_IMAGE} (docker import): {len(libs)} libraries, a shell, the CA bundle")
    return LOCAL_IMAGE


def base_image(binaries: list[Path]) -> str:
    if have_image(AWS_IMAGE):
        return AWS_IMAGE
    try:
        if run(["docker", "pull", AWS_IMAGE], timeout=60).returncode == 0:
            return AWS_IMAGE
    except subprocess.TimeoutExpired:
        pass
    log(f"{AWS_IMAGE} cannot be pulled here; building a local stand-in for it")
    return local_image(binaries)


# -- the functions, laid out as sam build lays them out -----------------------------------------

def lay_out() -> tuple[Path, list[Path]]:
    """target/sam-local/build/<LogicalId>/bootstrap and a template whose CodeUri points there."""
    from samcli.yamlhelper import yaml_dump, yaml_parse

    debug = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug"
    template = yaml_parse((ROOT / "template.yaml").read_text())
    binaries = []
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        name = resource["Metadata"]["BuildProperties"]["Binary"]
        built = debug / name
        if not built.exists():
            fail(f"{built} is not built: make bins builds it (cargo build --workspace --locked --bins)")
        dest = WORK / "build" / logical_id
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / "bootstrap"
        if target.exists():
            target.unlink()
        try:
            os.link(built, target)
        except OSError:
            shutil.copy2(built, target)
        binaries.append(target)
        resource["Properties"]["CodeUri"] = str(dest)
        # Built already: SAM must not try to build it with cargo-lambda.
        del resource["Metadata"]["BuildMethod"]
    out = WORK / "template.yaml"
    out.write_text(yaml_dump(template))
    return out, binaries


# -- invoking ----------------------------------------------------------------------------------

def function_of(event: Path) -> str:
    return up.LOGICAL_IDS[event.parent.name]


def invoke(template: Path, image: str, env_vars: Path, event: Path, endpoint: str) -> tuple[dict | None, str, float]:
    """What the function answered (None when SAM printed no JSON), its log, and the seconds."""
    cmd = [str(SAM), "local", "invoke", function_of(event), "--template", str(template),
           "--event", str(event), "--env-vars", str(env_vars), "--docker-network", "host",
           "--invoke-image", image, "--skip-pull-image", "--region", up.REGION,
           "--parameter-overrides", f"Architecture={ARCH}"]
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": up.REGION,
           # SAM asks STS for the account id before every invoke; unanswered, that is ~8 s of
           # retries. moto answers it.
           "AWS_ENDPOINT_URL_STS": endpoint, "AWS_EC2_METADATA_DISABLED": "true"}
    env.pop("AWS_SESSION_TOKEN", None)
    started = time.monotonic()
    done = run(cmd, env=env, cwd=ROOT, timeout=300)
    seconds = time.monotonic() - started
    answer = None
    for line in reversed(done.stdout.strip().splitlines()):
        try:
            answer = json.loads(line)
            break
        except json.JSONDecodeError:
            continue
    return answer, done.stderr + done.stdout, seconds


def prepare() -> None:
    """The layout and the image, for running `sam local invoke` by hand (README)."""
    template, binaries = lay_out()
    log(f"laid out {len(binaries)} functions for sam local: --template {template.relative_to(ROOT)}")
    if not engine_answers():
        log("no Docker engine answers: start one (dockerd as root, or Docker Desktop) for sam local invoke")
        return
    image = base_image(binaries)
    flags = "" if image == AWS_IMAGE else f" --invoke-image {image} --skip-pull-image"
    log(f"now, with make standins running:\n  {SAM.relative_to(ROOT)} local invoke DnsSyncFunction "
        f"--template {template.relative_to(ROOT)} -e events/dns-sync/schedule.json --env-vars .sam-local.json "
        f"--parameter-overrides Architecture={ARCH}{flags}")


def main() -> None:
    if sys.argv[1:] == ["--prepare"]:
        return prepare()
    chosen = [ROOT / a for a in sys.argv[1:]] or sorted((ROOT / "events").glob("*/*.json"))
    WORK.mkdir(parents=True, exist_ok=True)
    daemon = start_engine()
    children = []
    try:
        template, binaries = lay_out()
        image = base_image(binaries)
        host = up.bridge_address() or fail("Docker's bridge (docker0) has no address: containers could not reach the stand-ins")
        children, seeded, env = up.up(0, 0, host)
        env_vars = WORK / "env-vars.json"
        env_vars.write_text(json.dumps(up.sam_env_vars(env), indent=2))
        world = checks.World(env["AWS_ENDPOINT_URL"], seeded)
        failed, total = [], 0.0
        for event in chosen:
            name = f"{event.parent.name}/{event.name}"
            expect = checks.EXPECT.get(name)
            if expect is None:
                failed.append(f"{name}: no expectation in tests/samlocal/checks.py")
                continue
            before = world.snapshot()
            answer, logs, seconds = invoke(template, image, env_vars, event, env["AWS_ENDPOINT_URL"])
            total += seconds
            problem = checks.verify(expect, answer, logs, world, before)
            status = "ok  " if problem is None else "FAIL"
            log(f"{status} {name:<52} {seconds:5.1f} s  {expect.says}")
            if problem is not None:
                failed.append(f"{name}: {problem}\n    answer: {json.dumps(answer)[:600]}\n    log tail:\n"
                              + "\n".join("      " + l for l in logs.strip().splitlines()[-15:]))
        log(f"\n{len(chosen)} sample events through sam local invoke in {total:.0f} s "
            f"(image {image}, {ARCH}, emulator from {SAM.parent.parent.name}'s SAM CLI)")
        if failed:
            fail("\n".join(failed))
    finally:
        up.stop(children)
        stop_engine(daemon)


if __name__ == "__main__":
    main()
