"""`make bench`: what users pay for, per function, next to a hello-world Lambda built the same way.

- init: spawn the release `bootstrap` with AWS_LAMBDA_RUNTIME_API pointing at a minimal Lambda
  Runtime API served here, and time until its first `GET .../invocation/next` (N runs, interleaved
  with hello-world so both see the same machine);
- warm: the function's events/ samples sent through that Runtime API against the stand-ins, each
  as a new delivery (its own event id; for image-rollout a new image pushed to moto's ECR), so
  every invocation does the work and none is answered as a duplicate;
- memory: the process's peak RSS (VmHWM) over the warm invocations;
- size: the bootstrap and its zip, per architecture;
- API calls: AWS and Kubernetes requests per invocation, counted by proxies in front of the
  stand-ins;
- init per trust-store layout: AL2023's one bundle, Debian's directory, and a one-certificate floor;
- cost: GB-seconds per run at the warm latency and the month of the default schedules, arm64;
- cold invocation, whole: spawn → the response to the first event, next to bench/peer/handler.py,
  a Python/boto3 baseline making the same calls;
- fan-out: dns-sync and image-rollout over N = 1, 4, 8 clusters (and zones), each its own kmock,
  every request held --latency-ms (100) by a proxy, as a ratio to N = 1;
- storm: scaling-alerts' release binary given 1,000 launches and 1,000 terminations in two node
  groups and 200 Spot warnings for Karpenter nodes (all in moto), in SQS batches of 1,000 (the
  template's BatchSize): messages sent, AWS calls by operation, time per batch, peak RSS against
  the 128 MB the function is given.

Prints a table and writes it, with the machine and commit, to bench-results/.
"""
import argparse
import http.client
import http.server
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/standins"))
import up  # noqa: E402  (the stand-in seeding `make standins` uses)

FUNCTIONS = ["snapshot-export", "dns-sync", "image-rollout", "scaling-alerts"]
BASELINE = "hello-lambda"
SAMPLES = {
    "snapshot-export": ["schedule.json", "export-completed.json"],
    "dns-sync": ["schedule.json"],
    "image-rollout": ["push-latest.json"],
    "scaling-alerts": ["sqs-batch.json"],
}
BUDGET_INIT_RATIO = 1.5
BUDGET_RSS_MB = 25
BUDGET_ZIP_MB = 5


class RuntimeApi(http.server.ThreadingHTTPServer):
    """The part of the Lambda Runtime API a function uses: next, response, error."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), RuntimeHandler)
        self.events: "queue.Queue[tuple[str, bytes]]" = queue.Queue()
        self.results: dict[str, "queue.Queue[tuple[str, bytes]]"] = {}
        self.first_next = threading.Event()
        self.first_next_at = 0.0
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server_address[1]}"

    def handle_error(self, request, client_address):
        # A function killed after its init measurement drops its connection: expected.
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)

    def invoke(self, payload: bytes, timeout: float = 60) -> tuple[str, bytes, float]:
        request_id = str(uuid.uuid4())
        self.results[request_id] = queue.Queue()
        started = time.perf_counter()
        self.events.put((request_id, payload))
        kind, body = self.results[request_id].get(timeout=timeout)
        return kind, body, time.perf_counter() - started


class RuntimeHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: RuntimeApi

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/invocation/next"):
            return self.reply(404, b"{}")
        if not self.server.first_next.is_set():
            self.server.first_next_at = time.perf_counter()
            self.server.first_next.set()
        request_id, payload = self.server.events.get()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 300_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:eu-west-1:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        parts = self.path.split("/")
        if "invocation" in parts and parts[-1] in ("response", "error"):
            request_id = parts[parts.index("invocation") + 1]
            self.server.results[request_id].put((parts[-1], body))
        self.reply(202, b"{}")

    def reply(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class Gauge:
    """Requests in flight across the proxies that share it, and the most seen at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.now = self.peak = 0

    def __enter__(self):
        with self.lock:
            self.now += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc):
        with self.lock:
            self.now -= 1

    def take_peak(self) -> int:
        with self.lock:
            n, self.peak = self.peak, 0
            return n


class CountingProxy(http.server.ThreadingHTTPServer):
    """Forwards every request to a stand-in and counts them; with `delay`, holds each request that
    long first (the round trip to a real API endpoint), and records the most requests in flight."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, upstream: str, delay: float = 0.0, gauge: "Gauge | None" = None):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.upstream = upstream.removeprefix("http://")
        self.delay = delay
        self.gauge = gauge or Gauge()
        self.count = 0
        self.operations: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def take(self) -> int:
        with self.lock:
            n, self.count = self.count, 0
            return n


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CountingProxy

    def log_message(self, *args):
        pass

    def forward(self):
        with self.server.lock:
            self.server.count += 1
        with self.server.gauge:
            self.relay()

    def relay(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        self.server.operations.append(operation(self.command, self.path, self.headers, body))
        if self.server.delay:
            time.sleep(self.server.delay)
        conn = http.client.HTTPConnection(self.server.upstream, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "transfer-encoding")}
        conn.request(self.command, self.path, body=body or None, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = forward


def operation(method: str, path: str, headers, body: bytes) -> str:
    """What a request asks for: the AWS operation (JSON target or query Action) or method and path."""
    if target := headers.get("X-Amz-Target"):
        return target.rsplit(".", 1)[-1]
    if b"Action=" in body:
        return body.split(b"Action=", 1)[1].split(b"&", 1)[0].decode()
    return f"{method} {path.split('?', 1)[0]}"


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def spawn(binary: Path, api: RuntimeApi, env: dict) -> subprocess.Popen:
    return spawn_cmd([str(binary)], binary.parent.name, api, env)


def spawn_cmd(cmd: list, name: str, api: RuntimeApi, env: dict) -> subprocess.Popen:
    full = {"PATH": os.environ.get("PATH", ""), "AWS_LAMBDA_RUNTIME_API": api.address,
            "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "128",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "WARN",
            "HOME": os.environ.get("HOME", "/root"), **env}
    # As template.yaml sets it (there /etc/pki/tls/certs/ca-bundle.crt): one trust bundle file.
    for bundle in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if Path(bundle).exists():
            full.setdefault("SSL_CERT_FILE", bundle)
            break
    return subprocess.Popen(cmd, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def init_time(binary: Path, env: dict) -> float:
    api = RuntimeApi()
    started = time.perf_counter()
    proc = spawn(binary, api, env)
    if not api.first_next.wait(30):
        proc.kill()
        raise RuntimeError(f"{binary} never asked for an event")
    elapsed = api.first_next_at - started
    proc.kill()
    proc.wait()
    api.shutdown()
    return elapsed


def peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def build(skip: bool) -> None:
    if skip:
        return
    for arch, flags in (("x86_64", []), ("arm64", ["--arm64"])):
        print(f"building release binaries ({arch}) ...", flush=True)
        subprocess.run(["cargo", "lambda", "build", "--release", "--locked", *flags, "--lambda-dir", f"target/lambda-{arch}",
                        *sum((["--bin", b] for b in FUNCTIONS + [BASELINE]), [])], cwd=ROOT, check=True)


def sizes(name: str) -> dict:
    out = {}
    for arch in ("x86_64", "arm64"):
        binary = ROOT / f"target/lambda-{arch}/{name}/bootstrap"
        archive = ROOT / f"target/lambda-{arch}/{name}/bootstrap.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
            z.write(binary, "bootstrap")
        out[arch] = (binary.stat().st_size, archive.stat().st_size)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--skip-build", action="store_true", help="use the binaries already in target/lambda-*")
    ap.add_argument("--init-runs", type=int, default=20)
    ap.add_argument("--invocations", type=int, default=50)
    ap.add_argument("--latency-ms", type=float, default=100, help="fan-out: time the proxy holds each request")
    ap.add_argument("--cold-runs", type=int, default=10, help="cold invocations per function and peer")
    ap.add_argument("--fanout-runs", type=int, default=5, help="fan-out: timed invocations per N")
    ap.add_argument("--set", action="append", default=[], metavar="VAR=VALUE",
                    help="a function variable for this run (e.g. CLUSTER_CONCURRENCY=4 to compare)")
    ap.add_argument("--only", choices=["table", "tls", "cold", "fanout", "storm"], help="run one part (while working on it)")
    args = ap.parse_args()
    build(args.skip_build)

    # The stand-ins on free ports, seeded like `make standins`, each behind a counting proxy.
    children, seeded, local = up.up(free_port(), free_port(), "127.0.0.1")
    moto_url = local["AWS_ENDPOINT_URL"]
    try:
        aws = CountingProxy(moto_url)
        kube = CountingProxy(seeded["kube_url"])
        env = {**up.function_env(seeded, aws.url, kube.url), **dict(kv.split("=", 1) for kv in args.set)}
        rows = run(args, env, aws, kube, moto_url) if args.only in (None, "table") else []
        tls = trust_rows(args, env) if args.only in (None, "tls") else []
        cold = cold_rows(args, env, aws, kube, moto_url) if args.only in (None, "cold") else []
        if args.only in (None, "fanout"):
            print(f"fan-out: {args.latency_ms:.0f} ms per request, N = {', '.join(map(str, FANOUT))} ...", flush=True)
        fan = fanout(args, env, moto_url, seeded["lb"]) if args.only in (None, "fanout") else []
        storm = storm_row(env, aws, moto_url) if args.only in (None, "storm") else None
        report(rows, tls, cold, fan, args, storm)
    finally:
        up.stop(children)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, env: dict, aws: CountingProxy, kube: CountingProxy, moto_url: str) -> list:
    binary = lambda name: ROOT / f"target/lambda-x86_64/{name}/bootstrap"  # noqa: E731
    print(f"init: {args.init_runs} runs each, interleaved with {BASELINE} ...", flush=True)
    inits = {name: [] for name in FUNCTIONS + [BASELINE]}
    for _ in range(args.init_runs):
        for name in FUNCTIONS:
            inits[BASELINE].append(init_time(binary(BASELINE), env))
            inits[name].append(init_time(binary(name), env))
    hello = statistics.median(inits[BASELINE])

    rows = []
    for name in FUNCTIONS + [BASELINE]:
        samples = [(ROOT / "events" / name / s).read_bytes() for s in SAMPLES.get(name, [])] or [b'{"bench": true}']
        api = RuntimeApi()
        proc = spawn(binary(name), api, env)
        latencies, calls, errors = [], {}, 0
        aws.take(), kube.take()
        for i in range(args.invocations + len(samples)):
            sample = samples[i % len(samples)]
            event = delivery(name, sample, moto_url) if name != BASELINE else sample
            kind, body, elapsed = api.invoke(event)
            n_aws, n_kube = aws.take(), kube.take()
            if i >= len(samples):  # the first pass over the samples is the warm-up
                latencies.append(elapsed)
                calls.setdefault(SAMPLES.get(name, ["(payload)"])[i % len(samples)], (n_aws, n_kube))
            errors += kind == "error"
        rss = peak_rss_kb(proc.pid)
        proc.kill()
        proc.wait()
        api.shutdown()
        size = sizes(name)
        med = statistics.median(inits[name])
        rows.append({
            "function": name,
            "init_median_ms": med * 1000,
            "init_p90_ms": pct(inits[name], 90) * 1000,
            "init_ratio": med / hello,
            "warm_median_ms": statistics.median(latencies) * 1000,
            "warm_p90_ms": pct(latencies, 90) * 1000,
            "peak_rss_mb": rss / 1024,
            "bootstrap_x86_64_mb": size["x86_64"][0] / 1e6,
            "bootstrap_arm64_mb": size["arm64"][0] / 1e6,
            "zip_x86_64_mb": size["x86_64"][1] / 1e6,
            "zip_arm64_mb": size["arm64"][1] / 1e6,
            "api_calls": calls,
            "errors": errors,
        })
    return rows


PEER = ROOT / "bench/peer/handler.py"
BUNDLES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


def trust_rows(args, env: dict) -> list:
    """Init under the trust-store layouts a function meets: AL2023's (one bundle, named by
    SSL_CERT_FILE as template.yaml does), Debian's (SSL_CERT_DIR naming its ~300-entry directory as
    well), and a floor with one certificate (what the trust store costs is the difference)."""
    import tempfile

    bundle = next(Path(b) for b in BUNDLES if Path(b).exists())
    tmp = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    al2023 = tmp / "etc/pki/tls/certs"
    al2023.mkdir(parents=True)
    (al2023 / "ca-bundle.crt").write_bytes(bundle.read_bytes())
    (al2023 / "ca-bundle.trust.crt").write_bytes(bundle.read_bytes())
    pem = bundle.read_text()
    (tmp / "one.pem").write_text(pem[:pem.index("-----END CERTIFICATE-----") + 26])
    layouts = {
        "AL2023: SSL_CERT_FILE=/etc/pki/tls/certs/ca-bundle.crt": {"SSL_CERT_FILE": str(al2023 / "ca-bundle.crt")},
        "Debian: SSL_CERT_FILE and SSL_CERT_DIR=/etc/ssl/certs": {"SSL_CERT_FILE": str(bundle), "SSL_CERT_DIR": "/etc/ssl/certs"},
        "floor: one certificate": {"SSL_CERT_FILE": str(tmp / "one.pem")},
    }
    print(f"init per trust-store layout: {args.init_runs} runs each ...", flush=True)
    rows = []
    for label, extra in layouts.items():
        t = {name: [] for name in FUNCTIONS + [BASELINE]}
        for _ in range(args.init_runs):
            for name in t:
                t[name].append(init_time(ROOT / f"target/lambda-x86_64/{name}/bootstrap", {**env, **extra}))
        hello = statistics.median(t[BASELINE])
        rows.append({"layout": label, "hello_ms": hello * 1000,
                     **{name: statistics.median(v) * 1000 for name, v in t.items() if name != BASELINE}})
    return rows


def push(moto_url: str) -> bytes:
    """A new image pushed to shop/api:latest in moto's ECR, and its push event (the function checks
    the tag still points at the event's digest before it rolls). moto derives the digest from the
    layers' digests, so each push has a layer of its own."""
    import boto3

    ecr = boto3.client("ecr", endpoint_url=moto_url, region_name=up.REGION, aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    try:
        ecr.create_repository(repositoryName="shop/api")
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    media = "application/vnd.docker.distribution.manifest.v2+json"
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media, "layers": [{"digest": f"sha256:{uuid.uuid4().hex * 2}"}]})
    image = ecr.put_image(repositoryName="shop/api", imageManifest=manifest, imageTag="latest", imageManifestMediaType=media)
    return fresh((ROOT / "events/image-rollout/push-latest.json").read_bytes(), **{"image-digest": image["image"]["imageId"]["imageDigest"]})


def cold_rows(args, env: dict, aws: "CountingProxy", kube: "CountingProxy", moto_url: str) -> list:
    """A cold invocation, whole: spawn → the response to the first event, for each function and for
    the Python/boto3 peer making the same calls (bench/peer, a baseline), interleaved."""
    print(f"cold invocation: {args.cold_runs} runs each, interleaved with the Python peer ...", flush=True)
    rows = []
    for name in FUNCTIONS:
        sample = (ROOT / "events" / name / SAMPLES[name][0]).read_bytes()
        times = {"rust": [], "python": []}
        inits = {"rust": [], "python": []}
        ops, last = {}, {}
        # An untimed first run, so every timed one finds the same state (exports started, records made).
        warm = RuntimeApi()
        proc = spawn(ROOT / f"target/lambda-x86_64/{name}/bootstrap", warm, env)
        warm.invoke(delivery(name, sample, moto_url))
        proc.kill(), proc.wait(), warm.shutdown()
        for _ in range(args.cold_runs):
            for impl, cmd in (("rust", [str(ROOT / f"target/lambda-x86_64/{name}/bootstrap")]),
                              ("python", [sys.executable, str(PEER), name])):
                api = RuntimeApi()
                aws.operations.clear(), kube.operations.clear()
                event = delivery(name, sample, moto_url)
                started = time.perf_counter()
                proc = spawn_cmd(cmd, name, api, env)
                kind, body, _ = api.invoke(event)
                times[impl].append(time.perf_counter() - started)
                inits[impl].append(api.first_next_at - started)
                ops[impl] = (list(aws.operations), list(kube.operations))
                proc.kill()
                proc.wait()
                api.shutdown()
                last[impl] = body
                if kind == "error":
                    raise RuntimeError(f"{impl} {name} failed its cold invocation: {body[:300]!r}")
        rust, python = statistics.median(times["rust"]), statistics.median(times["python"])
        rows.append({"function": name, "sample": SAMPLES[name][0], "rust_ms": rust * 1000, "python_ms": python * 1000,
                     "rust_init_ms": statistics.median(inits["rust"]) * 1000,
                     "python_init_ms": statistics.median(inits["python"]) * 1000,
                     "speedup": python / rust, "calls": {k: (len(a), len(k8s)) for k, (a, k8s) in ops.items()},
                     "operations": ops, "responses": {k: v.decode()[:2000] for k, v in last.items()}})
        print(f"  {name}: {rust * 1000:.0f} ms, Python peer {python * 1000:.0f} ms", flush=True)
    return rows


FANOUT = (1, 4, 8)
BUDGET_FANOUT_RATIO = 1.5


def fresh(sample: bytes, **detail) -> bytes:
    """The sample as a new delivery: its own event id (a repeated id is a duplicate, handled once);
    an SQS batch, each record's event and message id."""
    event = json.loads(sample)
    if "Records" in event:
        for record in event["Records"]:
            record["messageId"] = str(uuid.uuid4())
            record["body"] = fresh(record["body"].encode()).decode()
        return json.dumps(event).encode()
    event["id"] = str(uuid.uuid4())
    event["time"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    event.get("detail", {}).update(detail)
    return json.dumps(event).encode()


def delivery(name: str, sample: bytes, moto_url: str) -> bytes:
    """The next event for a function: a push of a new image for image-rollout, else the sample as
    a new delivery."""
    return push(moto_url) if name == "image-rollout" else fresh(sample)


def seed_fan_cluster(url: str, lb: str, i: int) -> None:
    """Cluster `i` of the fan-out: one Deployment running shop/api:latest, one Ingress with its own
    host in its own zone (fan<i>.bench.example.com)."""
    import urllib.request

    image = f"{up.ACCOUNT}.dkr.ecr.{up.REGION}.amazonaws.com/shop/api:latest"
    objects = [
        ("apps/v1", "shop-dev", "deployments", {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "shop-dev",
                                                             "annotations": {"bridgekeeper.io/rollout": "true"}},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "api"}}, "template": {
                "metadata": {"labels": {"app": "api"}}, "spec": {"containers": [{"name": "app", "image": image}]}}}}),
        ("networking.k8s.io/v1", "shop-web", "ingresses", {
            "apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "shop", "namespace": "shop-web"},
            "spec": {"rules": [{"host": f"api.fan{i}.bench.example.com"}]},
            "status": {"loadBalancer": {"ingress": [{"hostname": lb}]}}}),
    ]
    for group, ns, plural, body in objects:
        req = urllib.request.Request(f"{url}/apis/{group}/namespaces/{ns}/{plural}", data=json.dumps(body).encode(),
                                     headers={"content-type": "application/json"}, method="POST")
        urllib.request.urlopen(req).read()


def fanout(args, env: dict, moto_url: str, lb: str) -> list:
    """One invocation of dns-sync and of image-rollout over N = 1, 4, 8 clusters (and zones), every
    request to the stand-ins held `--latency-ms` by a proxy: wall time, ratio to N = 1, and the most
    requests the function had in flight at once."""
    import boto3

    delay = args.latency_ms / 1000
    n_max = max(FANOUT)
    ports = [free_port() for _ in range(n_max)]
    children = [up.start("kmock", p, "127.0.0.1")[0] for p in ports]
    try:
        kw = dict(endpoint_url=moto_url, region_name=up.REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
        r53 = boto3.client("route53", **kw)
        zones = [r53.create_hosted_zone(Name=f"fan{i}.bench.example.com", CallerReference=f"fan{i}")["HostedZone"]["Id"].split("/")[-1]
                 for i in range(n_max)]
        for i, p in enumerate(ports):
            seed_fan_cluster(f"http://127.0.0.1:{p}", lb, i)
        aws, gauge = CountingProxy(moto_url, delay), Gauge()
        kubes = [CountingProxy(f"http://127.0.0.1:{p}", delay, gauge) for p in ports]

        schedule = (ROOT / "events/dns-sync/schedule.json").read_bytes()
        jobs = {
            "dns-sync": (lambda n: {"ZONE_IDS": ",".join(zones[:n]), "HOST_POLICY": "shop-web=bench.example.com"},
                         lambda: fresh(schedule)),
            "image-rollout": (lambda n: {"ROLLOUT_RULES": json.dumps([{
                "repository": "shop/*", "tag": "latest", "clusters": [f"c{i}" for i in range(n)], "namespaces": ["shop-dev"]}])},
                lambda: push(moto_url)),
        }
        rows = []
        for name, (extra, event) in jobs.items():
            base = None
            for n in FANOUT:
                clusters = ",".join(f"c{i}={kubes[i].url}" for i in range(n))
                api = RuntimeApi()
                proc = spawn(ROOT / f"target/lambda-x86_64/{name}/bootstrap", api,
                             {**env, "AWS_ENDPOINT_URL": aws.url, "CLUSTERS": clusters, **extra(n)})
                api.invoke(event())  # warm-up: the first run also creates the records
                walls, errors = [], 0
                for k in kubes + [aws]:
                    k.take()
                gauge.take_peak()
                for _ in range(args.fanout_runs):
                    kind, _, elapsed = api.invoke(event())
                    walls.append(elapsed)
                    errors += kind == "error"
                peak = gauge.take_peak()
                calls = sum(k.take() for k in kubes) / args.fanout_runs, aws.take() / args.fanout_runs
                proc.kill()
                proc.wait()
                api.shutdown()
                wall = statistics.median(walls)
                base = base or wall
                rows.append({"function": name, "n": n, "wall_ms": wall * 1000, "ratio": wall / base,
                             "k8s_calls": calls[0], "aws_calls": calls[1], "peak_k8s_in_flight": peak, "errors": errors})
                print(f"  {name} N={n}: {wall * 1000:.0f} ms ({wall / base:.2f}×)", flush=True)
        return rows
    finally:
        for c in children:
            c.stdin.close()


def verdict(ok: bool) -> str:
    return "pass" if ok else "FAIL"


# Lambda's public price for arm64 (us-east-1, first tier): per GB-second and per request.
ARM64_GB_SECOND_USD = 0.0000133334
REQUEST_USD = 0.20 / 1_000_000
# The template's MemorySize (Globals) and the runs per 30-day month of its default schedules: the
# nightly export (cron(0 3 * * ? *)) plus one completion event per source (3 here), dns-sync every
# 5 minutes, image-rollout's reconcile every 15 minutes. scaling-alerts runs per event, not on a clock.
MEMORY_MB = 128
MONTHLY_RUNS = {"snapshot-export": 30 * 4, "dns-sync": 30 * 24 * 12, "image-rollout": 30 * 24 * 4, "scaling-alerts": 1000}


def cost_lines(rows: list) -> list:
    lines = ["", "| function | warm median ms | GB-seconds per run | runs per month (default schedule) | USD per month, arm64 |",
             "|---|---|---|---|---|"]
    total = 0.0
    for r in rows:
        if r["function"] not in MONTHLY_RUNS:
            continue
        billed_ms = -(-r["warm_median_ms"] // 1)  # Lambda bills in 1 ms steps
        gbs = MEMORY_MB / 1024 * billed_ms / 1000
        runs = MONTHLY_RUNS[r["function"]]
        usd = runs * (gbs * ARM64_GB_SECOND_USD + REQUEST_USD)
        total += usd
        per = "per 1,000 events" if r["function"] == "scaling-alerts" else ""
        lines.append(f"| {r['function']} | {r['warm_median_ms']:.1f} | {gbs:.5f} | {runs:,} {per} | {usd:.4f} |")
    lines.append(f"| all | | | | {total:.4f} |")
    return lines


STORM_MEMORY_MB = 128  # template.yaml: ScalingAlertsFunction's MemorySize


def storm_row(env: dict, aws: "CountingProxy", moto_url: str) -> dict:
    """scaling-alerts under a storm, as Lambda runs it: the release binary, each SQS batch one
    invocation through the Runtime API, every AWS call through the counting proxy to moto."""
    import boto3

    kw = dict(endpoint_url=moto_url, region_name=up.REGION, aws_access_key_id="testing", aws_secret_access_key="testing")
    asg, ec2 = boto3.client("autoscaling", **kw), boto3.client("ec2", **kw)
    run_id = uuid.uuid4().hex[:8]
    asg.create_launch_configuration(LaunchConfigurationName=f"storm-{run_id}", ImageId="ami-12c6146b", InstanceType="m6i.large")
    groups = []
    for i in (1, 2):
        name = f"eks-storm-ng-{i}-{run_id}"
        tags = [{"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v, "PropagateAtLaunch": True}
                for k, v in (("eks:cluster-name", "prod-eks"), ("eks:nodegroup-name", f"ng-{i}"))]
        asg.create_auto_scaling_group(AutoScalingGroupName=name, LaunchConfigurationName=f"storm-{run_id}", MinSize=0,
                                      MaxSize=1000, DesiredCapacity=0, AvailabilityZones=[f"{up.REGION}a"], Tags=tags)
        groups.append(name)
    spot = ec2.run_instances(ImageId="ami-12c6146b", InstanceType="m6i.large", MinCount=200, MaxCount=200,
                             TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                 {"Key": "karpenter.sh/nodepool", "Value": "default"},
                                 {"Key": "eks:eks-cluster-name", "Value": "prod-eks"}]}])["Instances"]
    sample = lambda name: json.loads((ROOT / "events/scaling-alerts" / name).read_text())  # noqa: E731
    bodies = []
    for i in range(2000):
        e = sample("launch-successful.json" if i < 1000 else "terminate-successful.json")
        e["id"] = str(uuid.uuid4())
        e["detail"]["AutoScalingGroupName"] = groups[(i // 500) % 2]
        e["detail"]["EC2InstanceId"] = f"i-{i:017x}"
        bodies.append(e)
    for instance in spot:
        e = sample("spot-interruption.json")
        e["id"] = str(uuid.uuid4())
        e["detail"]["instance-id"] = instance["InstanceId"]
        bodies.append(e)
    records = [{"messageId": str(uuid.uuid4()), "receiptHandle": "storm", "body": json.dumps(b),
                "attributes": {"ApproximateReceiveCount": "1"}, "messageAttributes": {}, "md5OfBody": "",
                "eventSource": "aws:sqs", "eventSourceARN": f"arn:aws:sqs:{up.REGION}:{up.ACCOUNT}:storm",
                "awsRegion": up.REGION} for b in bodies]
    print(f"storm: {len(records)} records in batches of 1,000 ...", flush=True)
    api = RuntimeApi()
    proc = spawn(ROOT / "target/lambda-x86_64/scaling-alerts/bootstrap", api, env)
    aws.take()
    aws.operations.clear()
    times, sent, failed = [], 0, 0
    for start in range(0, len(records), 1000):
        kind, body, elapsed = api.invoke(json.dumps({"Records": records[start:start + 1000]}).encode(), timeout=120)
        if kind != "response":
            raise RuntimeError(f"the storm batch failed: {body[:300]!r}")
        answer = json.loads(body)
        sent += answer.get("notifications", 0)
        failed += len(answer.get("batchItemFailures", []))
        times.append(elapsed)
    rss = peak_rss_kb(proc.pid)
    proc.kill()
    proc.wait()
    api.shutdown()
    calls: dict[str, int] = {}
    for op in aws.operations:
        calls[op] = calls.get(op, 0) + 1
    return {"records": len(records), "batches": len(times), "messages": sent, "failed": failed, "ms": [t * 1000 for t in times],
            "peak_rss_mb": rss / 1024, "calls": dict(sorted(calls.items(), key=lambda kv: -kv[1]))}


def report(rows: list, tls: list, cold: list, fan: list, args, storm: dict | None = None) -> None:
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")), platform.processor())
    lines = [
        f"Bridgekeeper bench — commit {commit}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, {cpu}, {platform.system()} {platform.release()}",
        f"init: {args.init_runs} runs, interleaved with {BASELINE}; warm: {args.invocations} invocations of the events/ samples "
        "against the stand-ins (x86_64 release binaries; arm64 built for size)",
        "",
    ]
    if rows:
        lines += ["| function | init median (p90) ms | vs hello ≤1.5× | warm median (p90) ms | peak RSS MB ≤25 | bootstrap x86_64 / arm64 MB | zip x86_64 / arm64 MB ≤5 | API calls per invocation (AWS, k8s) |",
                  "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        calls = "; ".join(f"{k}: {a}, {k8s}" for k, (a, k8s) in r["api_calls"].items())
        lines.append(
            f"| {r['function']} | {r['init_median_ms']:.1f} ({r['init_p90_ms']:.1f}) "
            f"| {r['init_ratio']:.2f}× {verdict(r['init_ratio'] <= BUDGET_INIT_RATIO)} "
            f"| {r['warm_median_ms']:.1f} ({r['warm_p90_ms']:.1f}) "
            f"| {r['peak_rss_mb']:.1f} {verdict(r['peak_rss_mb'] <= BUDGET_RSS_MB)} "
            f"| {r['bootstrap_x86_64_mb']:.2f} / {r['bootstrap_arm64_mb']:.2f} "
            f"| {r['zip_x86_64_mb']:.2f} / {r['zip_arm64_mb']:.2f} {verdict(r['zip_arm64_mb'] <= BUDGET_ZIP_MB)} "
            f"| {calls}{' (errors: %d)' % r['errors'] if r['errors'] else ''} |"
        )
    if rows:
        lines += cost_lines(rows)
    if tls:
        lines += ["", f"init per trust-store layout, median of {args.init_runs} ms (× hello-world)", "",
                  "| layout | " + " | ".join(FUNCTIONS) + " | hello-world |", "|---|" + "---|" * (len(FUNCTIONS) + 1)]
        for r in tls:
            cells = " | ".join(f"{r[f]:.2f} ({r[f] / r['hello_ms']:.2f}×)" for f in FUNCTIONS)
            lines.append(f"| {r['layout']} | {cells} | {r['hello_ms']:.2f} |")
    if cold:
        lines += ["", f"cold invocation, whole (spawn → response to the first event), median of {args.cold_runs}; "
                  "the peer is bench/peer/handler.py, Python + boto3 making the same calls",
                  "", "| function | event | Rust: init / whole ms | Python/boto3 peer: init / whole ms | whole, peer ÷ Rust | API calls (AWS, k8s) Rust / peer |",
                  "|---|---|---|---|---|---|"]
        for r in cold:
            (ra, rk), (pa, pk) = r["calls"]["rust"], r["calls"]["python"]
            lines.append(f"| {r['function']} | {r['sample']} | {r['rust_init_ms']:.1f} / {r['rust_ms']:.1f} "
                         f"| {r['python_init_ms']:.1f} / {r['python_ms']:.1f} | {r['speedup']:.1f}× | {ra}, {rk} / {pa}, {pk} |")
    if fan:
        lines += ["", f"fan-out: one invocation over N clusters (dns-sync: and N zones), every request held "
                  f"{args.latency_ms:.0f} ms by a proxy; median of {args.fanout_runs}",
                  "", "| function | N | wall ms | vs N = 1 ≤1.5× | requests per run (k8s, AWS) | most k8s requests in flight |",
                  "|---|---|---|---|---|---|"]
        for r in fan:
            lines.append(f"| {r['function']} | {r['n']} | {r['wall_ms']:.0f} | {r['ratio']:.2f}× {verdict(r['ratio'] <= BUDGET_FANOUT_RATIO)} "
                         f"| {r['k8s_calls']:.0f}, {r['aws_calls']:.0f} | {r['peak_k8s_in_flight']}"
                         f"{' (errors: %d)' % r['errors'] if r['errors'] else ''} |")
    if storm:
        calls = ", ".join(f"{n} {op}" for op, n in storm["calls"].items())
        lines += ["", "storm: scaling-alerts given 1,000 launches + 1,000 terminations (two node groups) + 200 Spot "
                  "warnings (Karpenter nodes) in SQS batches of 1,000, against moto", "",
                  f"| records | batches | messages ≤12 | ms per batch | peak RSS MB ≤{STORM_MEMORY_MB} | AWS calls |",
                  "|---|---|---|---|---|---|",
                  f"| {storm['records']} | {storm['batches']} | {storm['messages']} {verdict(storm['messages'] <= 12)} "
                  f"| {', '.join(f'{t:.0f}' for t in storm['ms'])} "
                  f"| {storm['peak_rss_mb']:.1f} {verdict(storm['peak_rss_mb'] <= STORM_MEMORY_MB)} | {calls}"
                  f"{' (records returned: %d)' % storm['failed'] if storm['failed'] else ''} |"]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    path = out / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{commit}.md"
    path.write_text(text)
    (out / "latest.json").write_text(json.dumps({"functions": rows, "trust_store": tls, "cold": cold, "fanout": fan, "storm": storm}, indent=2))
    print(f"written to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
