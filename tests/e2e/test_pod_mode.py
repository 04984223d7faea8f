"""The gate in pod mode on the real node: the story's check pod, run by `pulumi up`.

One probe pod per namespace (`NamespaceProbe`, one container probing every app) is scheduled on
the local node, admitted by the API server under Pod Security `restricted`, resolves the service
DNS name through CoreDNS and kube-proxy, reads each app's Secret as the app would, and is gone
afterwards, on success and on failure alike. One app's broken Secret fails that app alone; a pod
that cannot be scheduled fails at the timeout.
"""

from __future__ import annotations

import copy
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
DSN = "host=${host} port=${port} dbname=${dbname} user=${user} password=${password}"
"""A templated key=value DSN; marked as a connection string, the probe logs in with it."""
APPS: list[dict[str, Any]] = [
    {
        "name": "e2e-pod-one",
        "deletion": "drop",
        "secret": {"keys": {"APP_DSN": DSN}, "connectionKeys": ["APP_DSN"]},
    },
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
PROBE_TYPE = "pulumi-python:dynamic/verification:NamespaceProbe"


def resources_of(stack: ProjectStack, type_: str) -> dict[str, dict[str, Any]]:
    state = stack.stack.export_stack().deployment or {}
    return {
        r["urn"].split("::")[-1]: r for r in state.get("resources") or [] if r.get("type") == type_
    }


def test_one_pod_with_one_container_checked_both_apps(deployed: ProjectStack) -> None:
    """The namespace's probe ran the two apps in one pod, in its one container."""
    probes = resources_of(deployed, PROBE_TYPE)
    assert list(probes) == [f"{NAMESPACE}-probe"], list(probes)
    outputs = probes[f"{NAMESPACE}-probe"]["outputs"]
    assert outputs["failed"] == []
    run_id = outputs["run_id"]
    pods = run_id.split(" ", 1)[1].split(",")
    assert len(pods) == 1 and pods[0].startswith("dbcheck-"), run_id
    checks = resources_of(deployed, CHECK_TYPE)
    for app in APPS:
        assert checks[f"{app['name']}-check"]["outputs"]["probe_run"] == run_id


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


def uri_outcome(stack: ProjectStack, app: str) -> dict[str, Any]:
    checks = resources_of(stack, CHECK_TYPE)[f"{app}-check"]["outputs"]["checks"]
    return next(c for c in checks if c["name"] == "uri")


def test_the_probe_pod_logs_in_with_a_templated_connection_key(deployed: ProjectStack) -> None:
    """e2e-pod-one's `APP_DSN` (a template, marked in `connectionKeys`) was read by the probe
    pod from the Secret, as the app would read it, and logged in."""
    uri = uri_outcome(deployed, "e2e-pod-one")
    assert uri["status"] == "pass"
    assert uri["message"].endswith("; so do APP_DSN"), uri
    assert uri_outcome(deployed, "e2e-pod-two")["message"] == "the Secret's uri connects as given"


def test_a_connection_key_that_does_not_log_in_fails_the_gate_naming_it(
    deployed: ProjectStack,
) -> None:
    """A template that gives a wrong password: the Secret gets it, the probe pod tries it, and the
    gate fails naming the app, the check and the key (the other app passes in the same `up`)."""
    broken = copy.deepcopy(APPS)
    broken[0]["secret"]["keys"]["APP_DSN"] = DSN.replace("${password}", "not-the-password")
    deployed.write_config(config(broken))
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
        text = str(err.value)
        assert (
            'app "e2e-pod-one": check "uri" failed: Secret key "APP_DSN" does not connect as given'
            in text
        ), text[-3000:]
        assert "password authentication failed" in text, text[-3000:]
        assert 'app "e2e-pod-two"' not in text, text[-3000:]
        assert uri_outcome(deployed, "e2e-pod-two")["status"] == "pass"
    finally:
        deployed.write_config(config())
    deployed.up()
    assert uri_outcome(deployed, "e2e-pod-one")["message"].endswith("; so do APP_DSN")


def test_one_apps_broken_secret_fails_that_app_alone(deployed: ProjectStack) -> None:
    """A key removed from one app's Secret behind Pulumi's back: that app's variable is unset
    (optional ref) and probe.sh reports it instead of probing; the other app probes, reports and
    its check passes in the same `up`; the gate fails naming the broken app only, in the
    kubelet's words for a missing key."""
    before = resources_of(deployed, CHECK_TYPE)["e2e-pod-one-check"]["outputs"]["checked_at"]
    kubectl(
        "patch",
        "secret",
        "e2e-pod-two-db-credentials",
        "-n",
        NAMESPACE,
        "--type=json",
        "-p",
        '[{"op":"remove","path":"/data/uri"}]',
    )
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
        text = str(err.value)
        broken = probe_pod_failure(
            "SecretIncomplete",
            NAMESPACE,
            r": couldn't find key uri in Secret " + NAMESPACE + r"/e2e-pod-two-db-credentials",
        )
        match = broken.search(text)
        assert match and match["app"] == "e2e-pod-two", text[-3000:]
        assert 'app "e2e-pod-one"' not in text, text[-3000:]
        assert probe_pods() == []
        after = resources_of(deployed, CHECK_TYPE)["e2e-pod-one-check"]["outputs"]
        assert after["checked_at"] > before  # judged in the same up, from the same pod
        assert set(after["checks_passed"]) == ALL_CHECKS, after
    finally:
        # Converge as the hint says: refresh sees the Secret's drift, up writes it back.
        deployed.stack.up(refresh=True, on_output=print, color="never")
    result = deployed.outputs()["apps"]["e2e-pod-two"]["verification"]
    assert set(result["checksPassed"]) == ALL_CHECKS, result


def test_a_probe_pod_that_cannot_be_scheduled_fails_at_the_timeout(
    deployed: ProjectStack,
) -> None:
    """The node tainted NoSchedule for the run: the pod stays Pending, and at `timeoutSeconds`
    each app fails with the pod's state; the pod is deleted (the timeout path of the runner)."""
    node = kubectl("get", "nodes", "-o", "name").stdout.split()[0].removeprefix("node/")
    taint = "postgres-apps-e2e/probe-timeout=yes:NoSchedule"
    deployed.write_config(config(timeoutSeconds=8))
    kubectl("taint", "nodes", "--overwrite", node, taint)
    started = time.monotonic()
    try:
        with pytest.raises(auto.CommandError) as err:
            deployed.up()
    finally:
        kubectl("taint", "nodes", node, taint + "-", check=False)
        deployed.write_config(config())
    elapsed = time.monotonic() - started
    text = str(err.value)
    late = probe_pod_failure(
        "Unschedulable",
        NAMESPACE,
        r" did not finish within 8 s \(phase Pending; PodScheduled: Unschedulable .*?taint.*?\)",
    )
    apps = {m["app"] for m in late.finditer(text)}
    assert apps == {a["name"] for a in APPS}, text[-3000:]
    assert elapsed < 8 + 90, f"took {elapsed:.0f} s"
    assert probe_pods() == []
