"""Serves the kmock Kubernetes emulator over HTTP on 127.0.0.1:<port> until killed.

kmock answers 404 for a resource kind until it is declared, so the kinds Bridgekeeper reads
and patches are declared here. Usage: python kmock_server.py PORT
"""
import asyncio
import signal
import sys

import kmock

RESOURCES = {
    "apps/v1/deployments": ("Deployment", True),
    "networking.k8s.io/v1/ingresses": ("Ingress", True),
    "v1/services": ("Service", True),
    "v1/namespaces": ("Namespace", False),
}


async def serve(port: int) -> None:
    async with kmock.KubernetesEmulator() as emulator:
        for key, (kind, namespaced) in RESOURCES.items():
            emulator.resources[key] = kmock.ResourceInfo(
                kind=kind,
                namespaced=namespaced,
                verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
            )
        async with kmock.Server(emulator, port=port) as server:
            print(f"kmock listening on {server.url}", flush=True)
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
