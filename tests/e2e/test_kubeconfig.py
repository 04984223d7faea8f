"""The gate reaches the cluster the stack's kubernetes provider uses: a stack that sets only
`kubernetes:kubeconfig` (no `kubernetes:context`, and a KUBECONFIG environment variable that
points nowhere) still runs its probe pods in that cluster.

Before the `kubeconfig` input the pod runner loaded the default kubeconfig with
`kubernetes:context` only: here it would have found no cluster at all.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi import automation as auto

from tests.e2e.harness import (
    KUBECONFIG,
    ProjectStack,
    base_config,
    drop_leftovers,
    kubectl,
    new_stack,
    remove_namespace,
)

NAMESPACE = "e2e-kubeconfig"
APPS: list[dict[str, Any]] = [{"name": "e2e-kcfg", "deletion": "drop"}]
ALL_CHECKS = {"dns", "tcp", "login", "uri", "crud", "privileges", "isolation", "latency"}


def config() -> dict[str, Any]:
    cfg = base_config(APPS, mode="pod", rerun="on-change", timeoutSeconds=90)
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    del cfg["kubernetes:context"]
    return cfg


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProjectStack]:
    remove_namespace(NAMESPACE)
    drop_leftovers([a["name"] for a in APPS])
    tmp = tmp_path_factory.mktemp("kubeconfig")
    # the default kubeconfig points nowhere: only the stack's config names the cluster
    stack = new_stack(tmp, "e2e-kubeconfig", env={"KUBECONFIG": str(tmp / "no-such-kubeconfig")})

    def configure() -> None:
        stack.write_config(config())
        stack.stack.set_config(
            "kubernetes:kubeconfig", auto.ConfigValue(KUBECONFIG.read_text(), secret=True)
        )

    try:
        configure()
        stack.up()
        yield stack
        configure()
        stack.stack.destroy(on_output=print, color="never")
    finally:
        stack.stack.workspace.remove_stack(stack.name, force=True)
        drop_leftovers([a["name"] for a in APPS])
        remove_namespace(NAMESPACE)


def test_the_probe_pod_ran_in_the_stacks_cluster(deployed: ProjectStack) -> None:
    result = deployed.outputs()["apps"]["e2e-kcfg"]["verification"]
    assert result["mode"] == "pod"
    assert set(result["checksPassed"]) == ALL_CHECKS, result
    # the probe pod is gone, in that cluster
    pods = kubectl("get", "pods", "-n", NAMESPACE, "-o", "name").stdout.split()
    assert not [p for p in pods if "dbcheck" in p], pods


def test_the_kubeconfig_is_a_secret_in_the_state_and_no_change_on_the_next_up(
    deployed: ProjectStack,
) -> None:
    state = deployed.stack.export_stack().deployment or {}
    assert KUBECONFIG.read_text() not in str(state)
    checks = [
        r
        for r in state["resources"]
        if str(r.get("type", "")).endswith("verification:ConnectivityCheck")
    ]
    assert checks
    for check in checks:
        for part in ("inputs", "outputs"):
            value = check[part].get("kubeconfig")
            assert isinstance(value, dict), (part, value)  # an encrypted secret, not text
            sig = value.get("4dabf18193072939515e22adb298388d")
            assert sig == "1b47061264138c4ac30d75fd1eb44270", value
    preview = deployed.preview()
    assert set((preview.change_summary or {}).keys()) <= {"same", "read"}, preview.change_summary
