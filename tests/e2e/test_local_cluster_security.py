"""The local cluster's listeners need credentials (project issue 11).

Before, any local user of the machine was cluster-admin: kine served the etcd API in plain text to
anyone, and the API server and its `system:public-info-viewer` answered anonymous requests. These
tests knock on each door without credentials (refused), with a certificate of the wrong CA
(refused), and with the right one (answers, so a refusal is not just a closed port).

Addresses and certificates come from `cluster.env` next to the kubeconfig, written by
localenv/cluster.sh (so the tests follow POSTGRES_APPS_API_PORT / POSTGRES_APPS_KINE_PORT).
"""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.harness import KUBECONFIG, kubectl

CLUSTER_ENV = KUBECONFIG.parent / "cluster.env"
KUBELET_PORT = 10250
KUBELET_READ_ONLY_PORT = 10255
# The empty request and the SERVING reply of grpc.health.v1.Health/Check in gRPC's framing
# (1 byte compressed flag, 4 bytes length, protobuf; status SERVING is field 1 = 1).
GRPC_EMPTY_REQUEST = b"\0\0\0\0\0"
GRPC_HEALTH_SERVING = b"\0\0\0\0\x02\x08\x01"


def cluster_facts() -> dict[str, str]:
    """`KEY=value` lines of cluster.env; fails (never skips) when the cluster predates them."""
    if not CLUSTER_ENV.is_file():
        pytest.fail(f"{CLUSTER_ENV} missing: run ./localenv/cluster.sh up")
    facts = dict(
        line.split("=", 1)
        for line in CLUSTER_ENV.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    missing = {"API_SERVER", "KINE_ENDPOINT", "PKI_DIR", "HOST_IP"} - facts.keys()
    if missing:
        pytest.fail(f"{CLUSTER_ENV} lacks {sorted(missing)}: run ./localenv/cluster.sh up")
    return facts


def pki(name: str) -> str:
    return str(Path(cluster_facts()["PKI_DIR"]) / name)


def http_status(url: str, context: ssl.SSLContext) -> int:
    """HTTP status of a GET (an error status is an answer too)."""
    try:
        with urllib.request.urlopen(url, context=context, timeout=5) as resp:  # noqa: S310
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def grpc_call(
    url: str, method: str, request: bytes, *curl_args: str
) -> subprocess.CompletedProcess[bytes]:
    """A unary gRPC call to kine with curl over HTTP/2 (the same probe as localenv/cluster.sh)."""
    return subprocess.run(
        [
            "curl",
            "-s",
            "--max-time",
            "5",
            *curl_args,
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
            "--data-binary",
            "@-",
            f"{url}/{method}",
        ],
        input=request,
        capture_output=True,
        check=False,
    )


def kine_health(*curl_args: str) -> subprocess.CompletedProcess[bytes]:
    return grpc_call(
        cluster_facts()["KINE_ENDPOINT"],
        "grpc.health.v1.Health/Check",
        GRPC_EMPTY_REQUEST,
        "--http2",
        "--cacert",
        pki("etcd-ca.crt"),
        *curl_args,
    )


def test_api_server_refuses_anonymous_requests() -> None:
    api = cluster_facts()["API_SERVER"]
    verified = ssl.create_default_context(cafile=pki("ca.crt"))
    for path in ("/api", "/version", "/livez"):
        assert http_status(api + path, verified) == 401, path
    # ...while the admin kubeconfig's client certificate is served.
    versions = json.loads(kubectl("get", "--raw", "/api").stdout)["versions"]
    assert versions == ["v1"]


def test_kine_answers_only_the_api_servers_client_certificate() -> None:
    endpoint = cluster_facts()["KINE_ENDPOINT"]
    assert endpoint.startswith("https://"), endpoint
    # Plain HTTP/2 (what kine served before): no answer.
    plain = grpc_call(
        endpoint.replace("https://", "http://"),
        "grpc.health.v1.Health/Check",
        GRPC_EMPTY_REQUEST,
        "--http2-prior-knowledge",
    )
    assert plain.stdout != GRPC_HEALTH_SERVING
    # TLS without a client certificate, and with the admin's (cluster CA, not kine's): the handshake
    # is ended by kine.
    assert kine_health().stdout == b""
    assert kine_health("--cert", pki("admin.crt"), "--key", pki("admin.key")).stdout == b""
    # The API server's etcd client certificate is served, and reads the cluster's data.
    etcd_client = (
        "--cert",
        pki("apiserver-etcd-client.crt"),
        "--key",
        pki("apiserver-etcd-client.key"),
    )
    assert kine_health(*etcd_client).stdout == GRPC_HEALTH_SERVING
    key = b"/registry/namespaces/default"
    range_request = b"\x0a" + bytes([len(key)]) + key  # etcdserverpb.RangeRequest{key}
    framed = b"\0" + len(range_request).to_bytes(4, "big") + range_request
    reply = grpc_call(
        endpoint,
        "etcdserverpb.KV/Range",
        framed,
        "--http2",
        "--cacert",
        pki("etcd-ca.crt"),
        *etcd_client,
    )
    assert key in reply.stdout, reply


def test_kubelet_refuses_anonymous_requests() -> None:
    host = cluster_facts()["HOST_IP"]
    # Any server certificate: this checks who the kubelet lets in, not who it is.
    unverified = ssl.create_default_context()
    unverified.check_hostname = False
    unverified.verify_mode = ssl.CERT_NONE
    for path in ("/pods", "/healthz", "/metrics"):
        assert http_status(f"https://{host}:{KUBELET_PORT}{path}", unverified) == 401, path
    # No read-only (unauthenticated) port.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, KUBELET_READ_ONLY_PORT), timeout=5).close()
    # ...while the API server's kubelet client certificate is served.
    client = ssl.create_default_context(cafile=pki("ca.crt"))
    client.load_cert_chain(pki("apiserver-kubelet-client.crt"), pki("apiserver-kubelet-client.key"))
    assert http_status(f"https://{host}:{KUBELET_PORT}/healthz", client) == 200
