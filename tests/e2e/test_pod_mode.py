"""The gate in pod mode on the real node: the story's check pod, run by `pulumi up`.

Probe pods are scheduled on the local node, admitted by the API server under Pod Security
`restricted`, resolve the service DNS name through CoreDNS and kube-proxy, read the app's Secret
as the app would, and are gone afterwards, on success and on failure alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e.harness import (
    LOCAL_LATENCY_BUDGET_MS,
    ProjectStack,
    admin_connection,
    base_config,
    drop_leftovers,
    kubectl,
    login_refused,
    new_stack,
    probe_pod_failure,
    remove_namespace,
)

NAMESPACE = "e2e-pods"
APPS: list[dict[str, Any]] = [
    {"name": "e2e-pod-one", "deletion": "drop"},
    {"name": "e2e-pod-two", "profile": "n8n", "deletion": "drop"},
]
ALL_CHECKS = {"dns", "tcp", "login", "uri", "crud", "privileges", "isolation", "latency"}
PROBE_SELECTOR = "app.kubernetes.io/part-of=postgres-apps,app.kubernetes.io/component"


def config(apps: list[dict[str, Any]] = APPS, **verification: Any) -> dict[str, Any]:
    cfg = base_config(apps, mode="pod", **{"rerun": "always", "timeoutSeconds": 90, **verification})
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    return cfg


def probe_pods() -> list[str]:
    out = kubectl("get", "pods", "-n", NAMESPACE, "-l", PROBE_SELECTOR, "-o", "name")
    return out.stdout.split()


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    remove_namespace(NAMESPACE)
    drop_leftovers([a["name"] for a in APPS])
    stack = new_stack(tmp_path_factory.mktemp("pods"), "e2e-pods")
    try:
        stack.write_config(config())
        stack.up()
        yield stack
        stack.write_config(config())
        stack.stack.destroy(on_output=print, color="never")
    finally:
        stack.stack.workspace.remove_stack(stack.name, force=True)
        drop_leftovers([a["name"] for a in APPS])
        remove_namespace(NAMESPACE)


def test_probe_pods_ran_every_check_in_cluster(deployed: ProjectStack) -> None:
    apps = deployed.outputs()["apps"]
    for app in APPS:
        result = apps[app["name"]]["verification"]
        assert result["mode"] == "pod"
        assert set(result["checksPassed"]) == ALL_CHECKS, result
        assert 0 < result["roundtripP95Ms"] <= LOCAL_LATENCY_BUDGET_MS, result


CHECK_TYPE = "pulumi-python:dynamic/verification:ConnectivityCheck"


def test_probe_pods_proved_isolation_both_ways(deployed: ProjectStack) -> None:
    """probe.sh in the psql image: one privilege query each way and one refused login."""
    state = deployed.stack.export_stack().deployment or {}
    checks = {
        r["urn"].split("::")[-1]: r["outputs"]["checks"]
        for r in state.get("resources") or []
        if r.get("type") == CHECK_TYPE
    }
    peer_of = {"e2e-pod-one": "e2e_pod_two", "e2e-pod-two": "e2e_pod_one"}
    for app, peer in peer_of.items():
        iso = next(c for c in checks[f"{app}-check"] if c["name"] == "isolation")
        assert iso["status"] == "pass", iso
        assert iso["message"].startswith("1 other apps, "), iso
        assert f'login to "{peer}" refused' in iso["message"], iso


def test_no_probe_pod_is_left(deployed: ProjectStack) -> None:
    assert probe_pods() == []


def test_namespace_enforces_restricted(deployed: ProjectStack) -> None:
    """The probe passed admission in a namespace that really rejects a privileged pod."""
    bad = kubectl(
        "run",
        "privileged-probe",
        "-n",
        NAMESPACE,
        "--image=docker.io/library/busybox:1",
        "--restart=Never",
        "--overrides",
        '{"spec":{"containers":[{"name":"c","image":"docker.io/library/busybox:1",'
        '"securityContext":{"privileged":true}}]}}',
        check=False,
    )
    assert bad.returncode != 0
    assert "violates PodSecurity" in bad.stderr, bad.stderr


def test_password_changed_behind_pulumis_back_fails_at_the_gate(deployed: ProjectStack) -> None:
    with admin_connection() as conn:
        conn.execute("ALTER ROLE e2e_pod_one PASSWORD 'changed-by-hand-1234567890'")
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
        text = str(err.value)
        assert login_refused("e2e-pod-one", "e2e_pod_one").search(text), text[-3000:]
        assert "changed-by-hand" not in text  # never echo a password
        assert probe_pods() == []
    finally:
        # Converge as the hint says: refresh sees the role's password drift, up writes it back.
        deployed.stack.up(refresh=True, on_output=print, color="never")
    result = deployed.outputs()["apps"]["e2e-pod-one"]["verification"]
    assert set(result["checksPassed"]) == ALL_CHECKS, result


def test_probe_pod_that_cannot_start_fails_within_timeout(deployed: ProjectStack) -> None:
    deployed.write_config(
        config(image="docker.io/postgres-apps/does-not-exist:0", timeoutSeconds=60)
    )
    started = time.monotonic()
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
    finally:
        deployed.write_config(config())
    elapsed = time.monotonic() - started
    text = str(err.value)
    # the kubelet's text (pkg/kubelet/images/image_manager.go) inside the gate's message
    never_pull = probe_pod_failure(
        "ErrImageNeverPull",
        NAMESPACE,
        r': Container image "docker\.io/postgres-apps/does-not-exist:0" is not present with '
        r"pull policy of Never",
    )
    assert never_pull.search(text), text[-3000:]
    assert elapsed < 60 + 90, f"took {elapsed:.0f} s"
    assert probe_pods() == []
