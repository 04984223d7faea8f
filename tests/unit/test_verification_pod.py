"""The pod runner for one app: the Pod spec (pure) and the control flow, with a fake client.

The fake (`probe_fakes`) replays scripted pod states so that every path of `run_pod_probe`
(success, fatal waiting reason, timeout, deadline, missing report, a Secret or key missing,
interrupt, failing create/delete) can be checked for the one invariant that matters: the pod is
deleted.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any

import pytest

from postgres_apps.verification.pod import (
    PROBE_SCRIPT,
    SECRET_ENV,
    PodProbeError,
    PodProbeSpec,
    build_probe_manifest,
    parse_report,
    pod_name,
    run_pod_probe,
)
from postgres_apps.verification.report import REPORT_SCHEMA
from postgres_apps.verification.statements import Peer, isolation_statement
from tests.unit.probe_fakes import ApiError, Clock, FakeCoreV1, pod_state, probe_log

SPEC = PodProbeSpec(
    app="n8n",
    namespace="apps",
    secret_name="n8n-db-credentials",
    image="docker.io/library/postgres:17-alpine",
    image_pull_policy="IfNotPresent",
    sslmode="prefer",
    peers=(Peer("paperless", "paperless"), Peer("app_test", "app_test_role")),
    timeout_seconds=30,
)
REPORT_LINE = json.dumps({"schema": REPORT_SCHEMA, "app": "n8n", "runner": "pod"})
LOG = probe_log(REPORT_LINE)


def probe(api: FakeCoreV1, spec: PodProbeSpec = SPEC) -> dict[str, Any]:
    if not api.log:
        api.log = LOG
    clock = Clock()
    return run_pod_probe(api, spec, clock=clock, sleep=clock.sleep, suffix="abc123")


NAME = "n8n-dbcheck-abc123"
TMP = "/tmp"  # noqa: S108 - the emptyDir mount inside the probe pod


# -- the Pod spec ----------------------------------------------------------------------------------


@pytest.fixture
def manifest() -> dict[str, Any]:
    return build_probe_manifest([SPEC], NAME, "echo script")


def test_pod_security_restricted(manifest: dict[str, Any]) -> None:
    spec = manifest["spec"]
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert isinstance(pod_sc["runAsUser"], int)
    assert pod_sc["runAsUser"] > 0
    assert pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = spec["containers"]
    sc = container["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["runAsNonRoot"] is True
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not any(v.get("hostPath") for v in spec["volumes"])
    assert "hostNetwork" not in spec
    assert "hostPID" not in spec


def test_pod_basics(manifest: dict[str, Any]) -> None:
    spec = manifest["spec"]
    (container,) = spec["containers"]
    assert manifest["metadata"]["name"] == NAME
    assert manifest["metadata"]["namespace"] == "apps"
    assert manifest["metadata"]["labels"] == {
        "app.kubernetes.io/name": "n8n",
        "app.kubernetes.io/component": "db-connectivity-check",
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/part-of": "postgres-apps",
    }
    assert spec["restartPolicy"] == "Never"
    assert spec["activeDeadlineSeconds"] == 30
    assert spec["automountServiceAccountToken"] is False
    assert container["image"] == "docker.io/library/postgres:17-alpine"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["sh", "-c", "echo script", "probe"]
    assert container["resources"]["requests"]["memory"] == "16Mi"
    assert container["resources"]["limits"]["memory"] == "64Mi"
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": TMP}]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}]


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """Kubernetes' command/args expansion (pkg/kubelet/container/helpers.go → expansion.Expand):
    `$$` → `$`; `$(NAME)` → env value if NAME is defined, else left as is; any other `$` kept."""
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c == "$" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end != -1:
                    name = text[i + 2 : end]
                    out.append(env.get(name, text[i : end + 1]))
                    i = end + 1
                    continue
        out.append(c)
        i += 1
    return "".join(out)


def test_the_script_survives_kubelet_expansion() -> None:
    """Found on the real node: `$$_$(date +%s)` arrived as `$_…` and the script died."""
    script = PROBE_SCRIPT.read_text()
    assert "$$" in script
    assert "$(" in script
    command = build_probe_manifest([SPEC], NAME, script)["spec"]["containers"][0]["command"]
    env = {
        "HOME": TMP,
        "date +%s": "oops",
        "DB_HOST": "h",
    }  # names the script might collide with
    assert kubelet_expand(command[2], env) == script
    # …and unescaped it would not have:
    assert kubelet_expand(script, env) != script


def test_env_comes_from_the_apps_secret(manifest: dict[str, Any]) -> None:
    """Each key by an optional `secretKeyRef` under the app's prefix (`P0_` for the one app): a
    missing key is probe.sh's to report for this app, not a container that cannot start."""
    env = {e["name"]: e for e in manifest["spec"]["containers"][0]["env"]}
    for var, key in SECRET_ENV:
        ref = {"name": "n8n-db-credentials", "key": key, "optional": True}
        assert env[f"P0_{var}"]["valueFrom"] == {"secretKeyRef": ref}
        assert "value" not in env[f"P0_{var}"]
        assert var not in env
    assert env["HOME"]["value"] == TMP
    # the complete isolation statement: the very text the direct runner sends
    assert env["P0_PROBE_ISOLATION_SQL"]["value"] == isolation_statement(SPEC.peers)
    assert env["P0_PROBE_APP"]["value"] == "n8n"
    assert env["PROBE_APPS"]["value"] == "1"
    # No credential is ever a literal value in the pod spec.
    names = ("PROBE_APP_VARS", "PROBE_SECRET_VARS")  # lists of variable names
    literal = json.dumps([e.get("value") for n, e in env.items() if n not in names])
    assert "password" not in literal.lower()


def test_the_script_reads_exactly_the_env_the_pod_gets() -> None:
    """Every DB_*/PROBE_* name probe.sh reads is given: per app (PROBE_APP_VARS, prefixed) or for
    the pod; the Secret's names are those of SECRET_ENV."""
    script = PROBE_SCRIPT.read_text()
    # `DB_CONN_$k`: the k-th connection key (read through eval), written here as DB_CONN_0
    used = {
        "DB_CONN_0" if name == "DB_CONN_" else name
        for name in re.findall(r"\$\{?(DB_[A-Z_]+|PROBE_[A-Z_]+)", script)
    }
    spec = replace(SPEC, connection_keys=("APP_DSN",))
    env = {
        e["name"]: e.get("value")
        for e in build_probe_manifest([spec], NAME, "")["spec"]["containers"][0]["env"]
    }
    per_app = set(str(env["PROBE_APP_VARS"]).split())
    assert set(str(env["PROBE_SECRET_VARS"]).split()) == {var for var, _ in SECRET_ENV}
    assert {f"P0_{v}" for v in per_app} <= set(env)
    given = per_app | {n for n in env if n.startswith("PROBE_")}
    # PROBE_DNS_HOST is an optional override (tests); everything else is set by the pod spec.
    assert used - given == {"PROBE_DNS_HOST"}
    connection = {"DB_CONN_KEYS", "DB_CONN_0"}
    assert {u for u in used if u.startswith("DB_")} == {var for var, _ in SECRET_ENV} | connection
    assert env["P0_DB_CONN_KEYS"] == "APP_DSN"
    assert env["P0_DB_CONN_0"] is None  # from the Secret, by secretKeyRef


def test_the_isolation_statement_survives_the_kubelet_and_carries_the_allow_list() -> None:
    spec = PodProbeSpec(
        app="solo",
        namespace="apps",
        secret_name="s",
        image="i",
        allowed_databases=("reporting", "odd $(DB_PASSWORD) $$ name"),
    )
    env = {
        e["name"]: e.get("value")
        for e in build_probe_manifest([spec], NAME, "")["spec"]["containers"][0]["env"]
    }
    value = env["P0_PROBE_ISOLATION_SQL"]
    assert value == isolation_statement((), spec.allowed_databases)
    assert kubelet_expand(value, {"DB_PASSWORD": "secret"}) == value  # no `$` in it at all
    assert "P0_PROBE_PEER_DATABASES" not in env


def test_pod_name_fits_63_characters() -> None:
    assert pod_name("n8n", "abc123") == NAME
    long = pod_name("a" * 63, "abc123")
    assert len(long) == 63
    assert long.endswith("-dbcheck-abc123")


def test_parse_report_takes_the_last_report_line() -> None:
    log = "noise\n{not json\n" + REPORT_LINE + "\n\n"
    assert parse_report(log) == json.loads(REPORT_LINE)
    assert parse_report('{"schema": "other"}\n') is None
    assert parse_report("") is None


# -- the runner's control flow --------------------------------------------------------------------


def test_success_reads_the_report_and_deletes_the_pod() -> None:
    api = FakeCoreV1(
        [pod_state("Pending"), pod_state("Running"), pod_state("Succeeded", exit_code=0)]
    )
    report = probe(api)
    assert report["schema"] == REPORT_SCHEMA
    assert report["pod"] == {"name": NAME, "namespace": "apps", "warnings": []}
    ops = [op for op, _ in api.calls]
    assert ops == ["list", "create", "read", "read", "read", "log", "delete"]
    assert api.deleted() == [NAME]
    command = api.only_created()["spec"]["containers"][0]["command"]
    assert kubelet_expand(command[2], {}) == PROBE_SCRIPT.read_text()


def test_failed_phase_with_a_report_still_returns_it() -> None:
    api = FakeCoreV1([pod_state("Failed", exit_code=1)])
    assert probe(api)["schema"] == REPORT_SCHEMA
    assert api.deleted() == [NAME]


@pytest.mark.parametrize(
    ("reason", "message", "words"),
    [
        ("ImagePullBackOff", 'Back-off pulling image "postgres:99"', "cannot pull the probe image"),
        ("ErrImagePull", "not found", "cannot pull the probe image"),
        ("ErrImageNeverPull", "image not present", "imagePullPolicy is Never"),
        (
            "CreateContainerConfigError",
            "invalid env var name",
            "configuration is refused by the node",
        ),
    ],
)
def test_fatal_waiting_reasons_fail_fast_and_delete(reason: str, message: str, words: str) -> None:
    api = FakeCoreV1([pod_state("Pending", waiting=(reason, message))])
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == reason
    assert message in err.value.message
    assert f"apps/{NAME}" in err.value.message
    assert words in err.value.hint
    assert [op for op, _ in api.calls].count("read") == 1  # no waiting for the timeout
    assert api.deleted() == [NAME]


def test_secret_cache_not_synced_yet_is_waited_for() -> None:
    """The kubelet retries `failed to sync secret cache` itself: the probe keeps waiting (here the
    pod then succeeds) instead of failing the gate with the missing-Secret hint."""
    api = FakeCoreV1(
        [
            pod_state(
                "Pending",
                waiting=(
                    "CreateContainerConfigError",
                    "failed to sync secret cache: timed out waiting for the condition",
                ),
            ),
            pod_state("Succeeded", exit_code=0),
        ]
    )
    assert probe(api)["schema"] == REPORT_SCHEMA
    assert [op for op, _ in api.calls].count("read") >= 2
    assert api.deleted() == [NAME]


def test_timeout_names_what_the_pod_was_doing_and_deletes() -> None:
    api = FakeCoreV1(
        [pod_state("Pending", waiting=("ContainerCreating", ""))],
    )
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "Timeout"
    assert "did not finish within 30 s" in err.value.message
    assert "phase Pending" in err.value.message
    assert "ContainerCreating" in err.value.message
    assert api.deleted() == [NAME]


def test_unschedulable_is_named() -> None:
    api = FakeCoreV1(
        [
            pod_state(
                "Pending",
                conditions=(("PodScheduled", "False", "Unschedulable", "0/1 nodes are available"),),
            )
        ]
    )
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "Unschedulable"
    assert "0/1 nodes are available" in err.value.message
    assert "no node can run" in err.value.hint
    assert api.deleted() == [NAME]


def test_deadline_exceeded() -> None:
    api = FakeCoreV1([pod_state("Failed", reason="DeadlineExceeded")])
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "DeadlineExceeded"
    assert "activeDeadlineSeconds=30" in err.value.message
    assert api.deleted() == [NAME]


def test_no_report_in_the_log() -> None:
    api = FakeCoreV1([pod_state("Failed", exit_code=2)], log=probe_log("sh: 1: Syntax error"))
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "NoReport"
    assert "exit code 2" in err.value.message
    assert "app n8n" in err.value.message
    assert "sh: 1: Syntax error" in err.value.message
    assert api.deleted() == [NAME]


def test_a_log_without_the_apps_section_is_no_report() -> None:
    api = FakeCoreV1([pod_state("Failed", exit_code=127)], log="sh: exec: not found\n")
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "NoReport"
    assert "exit code 127" in err.value.message
    assert "before it probed app n8n" in err.value.message


SECRET = "apps/n8n-db-credentials"


@pytest.mark.parametrize(
    ("missing", "exists", "detail"),
    [
        ("DB_URI", True, "couldn't find key uri in Secret apps/n8n-db-credentials"),
        (
            "DB_PASSWORD DB_URI",
            True,
            "couldn't find key password in Secret apps/n8n-db-credentials; "
            "couldn't find key uri in Secret apps/n8n-db-credentials",
        ),
        (" ".join(v for v, _ in SECRET_ENV), False, 'secret "n8n-db-credentials" not found'),
        (
            " ".join(v for v, _ in SECRET_ENV),
            True,
            "; ".join(
                f"couldn't find key {k} in Secret apps/n8n-db-credentials" for _, k in SECRET_ENV
            ),
        ),
    ],
)
def test_a_missing_secret_or_key_is_named_in_the_kubelets_words(
    missing: str, exists: bool, detail: str
) -> None:
    api = FakeCoreV1(
        [pod_state("Succeeded", exit_code=0)],
        log=probe_log(f"@missing {missing}"),
        secrets=("n8n-db-credentials",) if exists else (),
    )
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "SecretIncomplete"
    assert err.value.message == f"probe pod apps/{NAME}, app n8n: {detail}"
    assert "the app's Secret is missing or lacks a key" in err.value.hint
    assert api.deleted() == [NAME]


def test_keyboard_interrupt_still_deletes_the_pod() -> None:
    api = FakeCoreV1([pod_state("Running")], read_error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        probe(api)
    assert api.deleted() == [NAME]


def test_api_error_while_waiting_still_deletes_the_pod() -> None:
    api = FakeCoreV1([pod_state("Running")], read_error=ApiError(500, "etcd is sad"))
    with pytest.raises(ApiError):
        probe(api)
    assert api.deleted() == [NAME]


def test_pod_deleted_while_running_is_named_not_a_raw_api_error() -> None:
    api = FakeCoreV1([pod_state("Running")], read_error=ApiError(404, "pods not found"))
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "PodDeleted"
    assert err.value.message == f"probe pod apps/{NAME} was deleted while it ran"
    assert "re-run pulumi up" in err.value.hint
    assert api.deleted() == [NAME]  # deleting the already-gone pod is tried and tolerated


def test_create_refused_is_a_clear_error_and_nothing_to_delete() -> None:
    api = FakeCoreV1(
        [pod_state("Pending")],
        create_error=ApiError(403, 'pods "x" is forbidden: violates PodSecurity "restricted"'),
    )
    with pytest.raises(PodProbeError) as err:
        probe(api)
    assert err.value.reason == "PodCreateFailed"
    assert 'violates PodSecurity "restricted"' in err.value.message
    assert "403" in err.value.message
    assert api.deleted() == []


def test_delete_404_is_fine_and_other_delete_errors_become_warnings() -> None:
    gone = FakeCoreV1([pod_state("Succeeded")], delete_error=ApiError(404, "not found"))
    assert probe(gone)["pod"]["warnings"] == []

    stuck = FakeCoreV1([pod_state("Succeeded")], delete_error=ApiError(500, "nope"))
    warnings = probe(stuck)["pod"]["warnings"]
    assert warnings == [f"could not delete probe pod apps/{NAME}: 500 nope"]


def test_leftover_pods_of_the_app_are_deleted_first() -> None:
    """Every probe pod is listed; only those that check this app are deleted (another app's
    pod in the namespace may be running right now)."""
    api = FakeCoreV1(
        [pod_state("Succeeded")], leftovers=("n8n-dbcheck-old111", "paperless-dbcheck-run222")
    )
    report = probe(api)
    assert api.calls[0] == (
        "list",
        "app.kubernetes.io/component=db-connectivity-check,app.kubernetes.io/part-of=postgres-apps",
    )
    assert api.deleted() == ["n8n-dbcheck-old111", NAME]
    assert report["pod"]["warnings"] == ["deleted leftover probe pods: n8n-dbcheck-old111"]


def test_manifest_is_a_valid_v1pod_for_the_official_client(manifest: dict[str, Any]) -> None:
    """kubernetes 37's models forbid unknown fields: a typo fails here, not in the cluster."""
    from kubernetes.client import ApiClient, V1Pod  # noqa: PLC0415

    # What CoreV1Api.create_namespaced_pod(namespace, body=<dict>) does to its body (validate_call).
    pod = V1Pod.model_validate(manifest)
    assert ApiClient().sanitize_for_serialization(pod) == manifest  # type: ignore[no-untyped-call]

    typo = json.loads(json.dumps(manifest))
    typo["spec"]["containers"][0]["securityContext"]["seccompProfle"] = {"type": "RuntimeDefault"}
    with pytest.raises(ValueError, match="seccompProfle"):
        V1Pod.model_validate(typo)


def test_interrupt_or_lost_connection_during_create_still_deletes() -> None:
    interrupted = FakeCoreV1([pod_state("Pending")], create_error=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        probe(interrupted)
    assert interrupted.deleted() == [NAME]

    lost = FakeCoreV1([pod_state("Pending")], create_error=ConnectionResetError("reset by peer"))
    with pytest.raises(PodProbeError) as err:
        probe(lost)
    assert err.value.reason == "PodCreateFailed"
    assert "reset by peer" in err.value.message
    assert lost.deleted() == [NAME]
