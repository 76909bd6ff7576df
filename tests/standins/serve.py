"""Runs one local stand-in on a free loopback port until its standard input closes.

    python serve.py moto [PORT [HOST]]    # moto's server: RDS, S3, Route53, EKS, ECR, ELBv2, SNS, SQS, STS, ...
    python serve.py kmock [PORT [HOST]]   # kmock's Kubernetes emulator, with the kinds Bridgekeeper uses declared

PORT defaults to 0: a free port, chosen by the system. HOST defaults to 127.0.0.1; `make standins`
gives the Docker bridge's address so that `sam local invoke`'s containers reach the stand-ins too.

It prints one line, `READY <url>`, once the server answers. Tying its life to standard input
means the stand-in goes away with whatever started it (a test binary that panicked included).
"""
import asyncio
import sys
import threading

# kmock answers 404 for a kind until it is declared.
KUBE_RESOURCES = {
    "apps/v1/deployments": ("Deployment", True),
    "apps/v1/statefulsets": ("StatefulSet", True),
    "apps/v1/daemonsets": ("DaemonSet", True),
    "batch/v1/cronjobs": ("CronJob", True),
    "v1/pods": ("Pod", True),
    "v1/events": ("Event", True),
    "networking.k8s.io/v1/ingresses": ("Ingress", True),
    "v1/services": ("Service", True),
    "v1/namespaces": ("Namespace", False),
    # The Gateway API's standard channel; the experimental route kinds stay undeclared (404),
    # as on a cluster that installed only the standard CRDs.
    "gateway.networking.k8s.io/v1/gateways": ("Gateway", True),
    "gateway.networking.k8s.io/v1/httproutes": ("HTTPRoute", True),
    "gateway.networking.k8s.io/v1/grpcroutes": ("GRPCRoute", True),
}
VERBS = {"get", "list", "watch", "create", "update", "patch", "delete"}


def wait_for_stdin_eof() -> None:
    while sys.stdin.buffer.read(4096):
        pass


AWS_BACKUP_STAND_IN = "awsbackup-job-"


def emulate_aws_backup_snapshots() -> None:
    """What moto cannot produce: AWS Backup's RDS snapshots. AWS Backup names them
    `awsbackup:job-<id>`, of type `awsbackup` for an instance and `manual` for Aurora (where that
    type does not apply); RDS refuses a colon in a name given to CreateDBSnapshot, and moto has no
    AWS Backup for RDS. So a snapshot created here as `awsbackup-job-<id>` becomes the one AWS
    Backup would have made."""
    from moto.rds.models import RDSBackend

    create_db, create_cluster = RDSBackend.create_db_snapshot, RDSBackend.create_db_cluster_snapshot

    def renamed(name: str) -> str | None:
        return "awsbackup:job-" + name[len(AWS_BACKUP_STAND_IN):] if name.startswith(AWS_BACKUP_STAND_IN) else None

    def db_snapshot(self, db_instance_identifier, db_snapshot_identifier, snapshot_type="manual", *a, **kw):
        name = renamed(db_snapshot_identifier)
        if name:
            return create_db(self, db_instance_identifier, name, "awsbackup", *a, **kw)
        return create_db(self, db_instance_identifier, db_snapshot_identifier, snapshot_type, *a, **kw)

    def cluster_snapshot(self, db_cluster_identifier, db_cluster_snapshot_identifier, *a, **kw):
        name = renamed(db_cluster_snapshot_identifier) or db_cluster_snapshot_identifier
        return create_cluster(self, db_cluster_identifier, name, *a, **kw)

    RDSBackend.create_db_snapshot = db_snapshot
    RDSBackend.create_db_cluster_snapshot = cluster_snapshot

    # A BackupRetentionPeriod of 0 turns RDS's automated backups off (what a database whose
    # backups AWS Backup manages has); moto takes an automated snapshot regardless.
    from moto.rds.models import DBInstance

    save = DBInstance.save_automated_backup

    def automated_backup(self) -> None:
        if int(self.backup_retention_period or 0) > 0:
            save(self)

    DBInstance.save_automated_backup = automated_backup


def serve_moto(port: int, host: str) -> None:
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    emulate_aws_backup_snapshots()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"READY http://{host}:{port}", flush=True)
    wait_for_stdin_eof()
    server.stop()


async def serve_kmock(port: int, host: str) -> None:
    import kmock

    async with kmock.KubernetesEmulator() as emulator:
        for key, (kind, namespaced) in KUBE_RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(kind=kind, namespaced=namespaced, verbs=VERBS)
        async with kmock.Server(emulator, host=host, port=port or None) as server:
            print(f"READY http://{host}:{server.port}", flush=True)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, wait_for_stdin_eof)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else ""
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    host = sys.argv[3] if len(sys.argv) > 3 else "127.0.0.1"
    if which == "moto":
        serve_moto(port, host)
    elif which == "kmock":
        asyncio.run(serve_kmock(port, host))
    else:
        sys.exit("usage: serve.py moto|kmock [PORT [HOST]]")
