"""The `pod` runner: short-lived Pods in the apps' namespace run `probe.sh` with psql.

A probe container reads its app's Secret exactly as an app would (env from the Secret, one
`secretKeyRef` per key), is compliant with Pod Security `restricted`, and prints one probe report
(JSON) as its last log line. The runner creates the Pod, waits, reads the reports and deletes the
Pod ALWAYS (success, failure, timeout, interrupt).

Two shapes, one container spec: `run_pod_probe` checks one app in its own Pod (a
`ConnectivityCheck` used on its own); `run_batch_probe` checks every app of a namespace in one Pod
with one container per app (`NamespaceProbe`): scheduling, sandbox and volume set-up are paid once
per namespace instead of once per app. Containers do not share env, a PID namespace or a volume,
so each still sees only its own app's Secret; the kubelet starts them one by one and a container
that cannot start (its Secret or key missing) fails alone: the others run and report.

The builders are pure; the runners take any object with the five CoreV1Api methods they use (the
official `kubernetes` client in production, a recording fake in unit tests).
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from postgres_apps.verification.report import REPORT_SCHEMA
from postgres_apps.verification.statements import Peer, probe_env, probe_table

CONTAINER: Final = "probe"
"""The container of a single-app probe pod (a batch pod names each container after its app)."""
COMPONENT_LABEL: Final = "db-connectivity-check"
BATCH_NAME_LABEL: Final = "postgres-apps-probe"
"""`app.kubernetes.io/name` of a batch pod (a single-app pod carries the app's name)."""
APP_LABEL_PREFIX: Final = "dbcheck.postgres-apps.io/"
"""A batch pod carries `<prefix><app>` for each app it checks: leftovers are found per app."""
BATCH_LIMIT: Final = 25
"""Most apps one batch pod checks (more make more pods, run at the same time). Bounds the pod's
requests (25 containers of 10m CPU and 16 MiB each) and the sessions it opens at once."""
PROBE_SCRIPT: Final = Path(__file__).with_name("probe.sh")
TMP_DIR: Final = "/tmp"  # noqa: S108 - an emptyDir inside the probe pod (read-only root fs)

SECRET_ENV: Final[tuple[tuple[str, str], ...]] = (
    ("DB_HOST", "host"),
    ("DB_PORT", "port"),
    ("DB_NAME", "dbname"),
    ("DB_USER", "user"),
    ("DB_PASSWORD", "password"),
    ("DB_URI", "uri"),
)
"""Probe env var ← key of the app's Secret (the CloudNativePG key names the apps read)."""

FATAL_WAITING_REASONS: Final = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
"""Container waiting reasons that will not fix themselves within the probe's timeout."""

TRANSIENT_WAITING_MESSAGES: Final = (
    "failed to sync secret cache",
    "failed to sync configmap cache",
)
"""`CreateContainerConfigError` messages the kubelet retries by itself: its Secret cache did not
sync within its own short wait (seen on a loaded node right after an API server restart). A
missing Secret or key (`secret "…" not found`, `couldn't find key …`) stays fatal."""

_PULL_HINT: Final = (
    "the node cannot pull the probe image; set postgres-apps:verification.image to an image the "
    "cluster can pull (and verification.imagePullPolicy)"
)
_REASON_HINTS: Final = {
    "ErrImagePull": _PULL_HINT,
    "ImagePullBackOff": _PULL_HINT,
    "InvalidImageName": "postgres-apps:verification.image is not a valid image reference",
    "ErrImageNeverPull": "imagePullPolicy is Never and the probe image is not on the node",
    "CreateContainerConfigError": "the app's Secret is missing or lacks a key the apps read "
    "(host, port, dbname, user, password, uri); run pulumi up --refresh to recreate it",
    "DeadlineExceeded": "the probe did not finish in time; PostgreSQL or DNS is hanging "
    "(raise postgres-apps:verification.timeoutSeconds only if the cluster is just slow)",
    "Unschedulable": "no node can run the probe pod (resources, taints, quotas)",
    "PodDeleted": "something deleted or evicted the probe pod (a person, a controller, node "
    "pressure); re-run pulumi up",
}


class PodProbeError(RuntimeError):
    """The probe pod could not produce a report. `reason` names why (k8s reason or ours)."""

    def __init__(self, reason: str, message: str, hint: str = "") -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message
        self.hint = hint or _REASON_HINTS.get(reason, "")


@dataclass(frozen=True)
class PodProbeSpec:
    """What the probe pod needs (all plain values: the provider passes its inputs through)."""

    app: str
    namespace: str
    secret_name: str
    image: str
    image_pull_policy: str = "IfNotPresent"
    sslmode: str = "prefer"
    peers: Sequence[Peer] = ()
    """The other managed apps (database and role each) for the isolation check."""
    allowed_databases: Sequence[str] = ()
    """Databases the app may connect to on purpose (not reported by the isolation check)."""
    timeout_seconds: int = 120
    roundtrips: int = 20
    connect_timeout_s: int = 10
    run_as_user: int = 70
    """70 is the postgres user of the official postgres:*-alpine images."""
    labels: dict[str, str] = field(default_factory=dict)
    cpu_request: str = "10m"
    cpu_limit: str = "250m"
    """A tight CPU limit throttles psql's start-up (CFS periods of 100 ms) into the connect time."""


def probe_script() -> str:
    return PROBE_SCRIPT.read_text()


def probe_labels(app: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": app,
        "app.kubernetes.io/component": COMPONENT_LABEL,
        "app.kubernetes.io/managed-by": "pulumi",
        "app.kubernetes.io/part-of": "postgres-apps",
    }


def batch_labels(apps: Sequence[str]) -> dict[str, str]:
    return {**probe_labels(BATCH_NAME_LABEL), **{APP_LABEL_PREFIX + app: "" for app in apps}}


def label_selector(app: str) -> str:
    return ",".join(
        f"{k}={v}" for k, v in probe_labels(app).items() if k != "app.kubernetes.io/managed-by"
    )


def probes_selector() -> str:
    """Every probe pod of postgres-apps (single-app and batch)."""
    keep = ("app.kubernetes.io/component", "app.kubernetes.io/part-of")
    return ",".join(f"{k}={v}" for k, v in probe_labels("").items() if k in keep)


def checks_app(pod: Any, app: str) -> bool:
    """True when this probe pod checks `app` (alone, or in a batch)."""
    labels = _get(pod, "metadata", "labels") or {}
    return labels.get("app.kubernetes.io/name") == app or (APP_LABEL_PREFIX + app) in labels


def pod_name(app: str, suffix: str) -> str:
    """`<app>-dbcheck-<suffix>`, at most 63 characters."""
    return f"{app[: 63 - len('-dbcheck-') - len(suffix)]}-dbcheck-{suffix}"


def batch_pod_name(suffix: str) -> str:
    """`dbcheck-<suffix>`: a batch pod checks several apps, so no app's name."""
    return f"dbcheck-{suffix}"


def escape_for_kubernetes(text: str) -> str:
    """Protect a command argument from Kubernetes' `$(VAR)` expansion.

    The kubelet expands `$(NAME)` in command/args from the container's env and turns `$$` into
    `$`: a shell script's `$$` (PID) or `$(cmd)` would be mangled. Doubling every `$` makes the
    expansion give back the text unchanged.
    """
    return text.replace("$", "$$")


def statement_env(spec: PodProbeSpec, table: str) -> list[dict[str, str]]:
    """probe.sh's SQL (`statements.probe_env`): the very texts the direct runner sends, escaped
    for the kubelet's `$(VAR)` expansion of env values."""
    env = probe_env(spec.peers, spec.allowed_databases, table)
    return [{"name": k, "value": escape_for_kubernetes(v)} for k, v in env.items()]


def restricted_container(run_as_user: int) -> dict[str, Any]:
    """A container's securityContext under Pod Security `restricted`, read-only root (the probe
    pod's and the retirement copy pod's)."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "runAsUser": run_as_user,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def probe_container(
    spec: PodProbeSpec, container: str, table_seed: str, script: str, tmp_volume: str
) -> dict[str, Any]:
    """One app's probe container: env from the app's Secret, the SQL, the script as argument.

    The scratch table is named after `table_seed` (`statements.probe_table`): unique per run."""
    env: list[dict[str, Any]] = [
        {
            "name": var,
            "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key}},
        }
        for var, key in SECRET_ENV
    ]
    env += [
        {"name": "HOME", "value": TMP_DIR},
        {"name": "TMPDIR", "value": TMP_DIR},
        {"name": "PROBE_APP", "value": spec.app},
        {"name": "PROBE_SSLMODE", "value": spec.sslmode},
        *statement_env(spec, probe_table(table_seed)),
        {"name": "PROBE_ROUNDTRIPS", "value": str(spec.roundtrips)},
        {"name": "PROBE_CONNECT_TIMEOUT", "value": str(spec.connect_timeout_s)},
    ]
    return {
        "name": container,
        "image": spec.image,
        "imagePullPolicy": spec.image_pull_policy,
        "command": ["sh", "-c", escape_for_kubernetes(script), "probe"],
        "env": env,
        "securityContext": restricted_container(spec.run_as_user),
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": "16Mi", "ephemeral-storage": "1Mi"},
            "limits": {"cpu": spec.cpu_limit, "memory": "64Mi", "ephemeral-storage": "32Mi"},
        },
        "volumeMounts": [{"name": tmp_volume, "mountPath": TMP_DIR}],
    }


def _probe_pod(
    lead: PodProbeSpec,
    name: str,
    labels: dict[str, str],
    containers: list[dict[str, Any]],
) -> dict[str, Any]:
    """The Pod around probe containers: Pod Security `restricted`, no token, no service links,
    each container its own emptyDir for /tmp (named like its mount in the container)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": lead.namespace,
            "labels": {**labels, **lead.labels},
            "annotations": {"postgres-apps/purpose": "post-deploy database connectivity check"},
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": lead.timeout_seconds,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "terminationGracePeriodSeconds": 1,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": lead.run_as_user,
                "runAsGroup": lead.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": containers,
            "volumes": [
                {"name": c["volumeMounts"][0]["name"], "emptyDir": {"sizeLimit": "16Mi"}}
                for c in containers
            ],
        },
    }


def build_pod_manifest(spec: PodProbeSpec, name: str, script: str) -> dict[str, Any]:
    """The single-app probe Pod (container `probe`; the scratch table named after the pod)."""
    container = probe_container(spec, CONTAINER, name, script, "tmp")
    return _probe_pod(spec, name, probe_labels(spec.app), [container])


SLOTS_DIR: Final = "/slots"
"""A batch pod's one shared volume: a lock file per lane, nothing else (`probe.sh`)."""
BATCH_SLOTS: Final = 4
"""Lanes of a batch pod: container i probes while holding lane i mod 4's lock (flock), so at
most four probe at once. The per-app pods ran in the dynamic provider host's four lanes, and the
latency figures stay comparable: ten at once on two cores tripled the median connect time
(36 → 142 ms, bench of 2026-12-03)."""


def build_batch_manifest(specs: Sequence[PodProbeSpec], name: str, script: str) -> dict[str, Any]:
    """One Pod for several apps of one namespace: a container per app, named after it (app names
    are DNS-1123 labels of at most 48 characters), each with its own /tmp and scratch table.

    Pod-wide settings (namespace, deadline, user, extra labels) come from the first spec; the
    caller groups specs that agree on them (`batch_key`)."""
    if not specs:
        raise ValueError("a batch probe pod needs at least one app")
    containers = [
        probe_container(spec, spec.app, f"{name}/{spec.app}", script, f"tmp-{index}")
        for index, spec in enumerate(specs)
    ]
    for index, c in enumerate(containers):
        c["env"] += [
            {"name": "PROBE_SLOTS_DIR", "value": SLOTS_DIR},
            {"name": "PROBE_LANE", "value": str(index % BATCH_SLOTS)},
        ]
        c["volumeMounts"].append({"name": "slots", "mountPath": SLOTS_DIR})
    manifest = _probe_pod(specs[0], name, batch_labels([s.app for s in specs]), containers)
    manifest["spec"]["volumes"].append({"name": "slots", "emptyDir": {"sizeLimit": "1Mi"}})
    return manifest


def batch_key(spec: PodProbeSpec) -> tuple[Any, ...]:
    """What apps must share to be checked in one Pod (the Pod-wide settings)."""
    return (
        spec.namespace,
        spec.timeout_seconds,
        spec.run_as_user,
        tuple(sorted(spec.labels.items())),
    )


# ---------------------------------------------------------------------------------------------
# Reading pod status (kubernetes client models or any object with the same attribute names)
# ---------------------------------------------------------------------------------------------


def _get(obj: Any, *path: str) -> Any:
    for attr in path:
        if obj is None:
            return None
        obj = getattr(obj, attr, None)
    return obj


def fatal_state(pod: Any) -> tuple[str, str] | None:
    """(reason, message) when a container is stuck for a reason that won't clear in time."""
    for cs in _get(pod, "status", "container_statuses") or []:
        if (fatal := _fatal_container(cs)) is not None:
            return fatal
    return None


def pending_state(pod: Any) -> str:
    """What a pod that did not finish was doing, for the timeout message."""
    parts = [f"phase {_get(pod, 'status', 'phase') or 'unknown'}"]
    for cond in _get(pod, "status", "conditions") or []:
        if _get(cond, "status") == "False" and _get(cond, "reason"):
            parts.append(
                f"{_get(cond, 'type')}: {_get(cond, 'reason')} {_get(cond, 'message') or ''}"
            )
    for cs in _get(pod, "status", "container_statuses") or []:
        waiting = _get(cs, "state", "waiting")
        if waiting is not None:
            parts.append(
                f"container waiting: {_get(waiting, 'reason')} {_get(waiting, 'message') or ''}"
            )
    return "; ".join(p.strip() for p in parts)


def _exit_code(pod: Any) -> int | None:
    for cs in _get(pod, "status", "container_statuses") or []:
        code = _get(cs, "state", "terminated", "exit_code")
        if code is not None:
            return int(code)
    return None


def parse_report(log: str) -> dict[str, Any] | None:
    """The last log line that is a probe report, or None."""
    for raw in reversed(log.splitlines()):
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if isinstance(doc, dict) and doc.get("schema") == REPORT_SCHEMA:
            return doc
    return None


def api_error_text(exc: BaseException) -> str:
    """kubernetes.client ApiException → its status message; anything else → str()."""
    body = getattr(exc, "body", None)
    if body:
        try:
            doc = json.loads(body)
            if isinstance(doc, dict) and doc.get("message"):
                return f"{getattr(exc, 'status', '')} {doc['message']}".strip()
        except (TypeError, ValueError):
            pass
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is not None:
        return f"{status} {reason or ''}".strip()
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_not_found(exc: BaseException) -> bool:
    return getattr(exc, "status", None) == 404


def cluster_unreachable(exc: BaseException) -> bool:
    """No answer from the API server: no kubeconfig or context, or no connection (no HTTP status).

    The same cases pulumi-kubernetes calls an unreachable cluster (`clusterUnreachable` in
    provider/pkg/provider/provider.go: kubeconfig not loadable, discovery failed)."""
    import urllib3  # noqa: PLC0415 - heavy, imported where used
    from kubernetes.config import ConfigException  # noqa: PLC0415

    return isinstance(exc, ConfigException | urllib3.exceptions.HTTPError | OSError)


# ---------------------------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------------------------


def delete_probe_pods(
    api: Any, namespace: str, app: str | Sequence[str], keep: str | None = None
) -> list[str]:
    """Delete leftover probe pods that check this app (or any of these apps), alone or in a
    batch, from an interrupted run; returns their names."""
    apps = [app] if isinstance(app, str) else list(app)
    pods = api.list_namespaced_pod(namespace, label_selector=probes_selector(), _request_timeout=30)
    deleted = []
    for pod in _get(pods, "items") or []:
        name = _get(pod, "metadata", "name")
        if name and name != keep and any(checks_app(pod, a) for a in apps):
            delete_pod(api, name, namespace)
            deleted.append(str(name))
    return deleted


def delete_pod(api: Any, name: str, namespace: str) -> None:
    try:
        api.delete_namespaced_pod(
            name,
            namespace,
            grace_period_seconds=0,
            propagation_policy="Background",
            _request_timeout=30,
        )
    except Exception as exc:
        if not _is_not_found(exc):
            raise


def run_pod_probe(
    api: Any,
    spec: PodProbeSpec,
    *,
    poll_interval_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    suffix: str | None = None,
) -> dict[str, Any]:
    """Create the probe pod, wait, return its report; the pod is deleted whatever happens."""
    name = pod_name(spec.app, suffix or secrets.token_hex(3))
    manifest = build_pod_manifest(spec, name, probe_script())
    warnings: list[str] = []
    try:
        leftovers = delete_probe_pods(api, spec.namespace, spec.app)
        if leftovers:
            warnings.append(f"deleted leftover probe pods: {', '.join(leftovers)}")
    except Exception as exc:
        warnings.append(f"could not list/delete leftover probe pods: {api_error_text(exc)}")

    maybe_created = True
    try:
        try:
            api.create_namespaced_pod(spec.namespace, manifest, _request_timeout=30)
        except Exception as exc:
            # An API answer (403, 409, 422 …) means no pod; a lost connection may hide one.
            maybe_created = getattr(exc, "status", None) is None
            raise _create_failed(spec.namespace, name, exc) from exc
        report = _wait_and_read(
            api, spec, name, poll_interval_s=poll_interval_s, clock=clock, sleep=sleep
        )
    finally:
        # Always: success, failure, timeout, KeyboardInterrupt (also during create).
        if maybe_created:
            try:
                delete_pod(api, name, spec.namespace)
            except Exception as exc:
                warnings.append(
                    f"could not delete probe pod {spec.namespace}/{name}: {api_error_text(exc)}"
                )
    report["pod"] = {"name": name, "namespace": spec.namespace, "warnings": warnings}
    return report


def _wait_and_read(
    api: Any,
    spec: PodProbeSpec,
    name: str,
    *,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> dict[str, Any]:
    where = f"{spec.namespace}/{name}"
    deadline = clock() + spec.timeout_seconds
    while True:
        try:
            pod = api.read_namespaced_pod(name, spec.namespace, _request_timeout=30)
        except Exception as exc:
            if _is_not_found(exc):
                raise PodProbeError(
                    "PodDeleted", f"probe pod {where} was deleted while it ran"
                ) from exc
            raise
        phase = _get(pod, "status", "phase")
        if phase in ("Succeeded", "Failed"):
            break
        fatal = fatal_state(pod)
        if fatal is not None:
            reason, message = fatal
            raise PodProbeError(reason, f"probe pod {where}: {message}".strip())
        if clock() >= deadline:
            state = pending_state(pod)
            reason = "Unschedulable" if "Unschedulable" in state else "Timeout"
            raise PodProbeError(
                reason,
                f"probe pod {where} did not finish within {spec.timeout_seconds} s ({state})",
                _REASON_HINTS.get(reason) or _REASON_HINTS["DeadlineExceeded"],
            )
        sleep(poll_interval_s)

    pod_reason = _get(pod, "status", "reason")
    if pod_reason == "DeadlineExceeded":
        raise PodProbeError(
            "DeadlineExceeded",
            f"probe pod {where} was stopped after activeDeadlineSeconds={spec.timeout_seconds}",
        )
    try:
        log = api.read_namespaced_pod_log(
            name, spec.namespace, container=CONTAINER, _request_timeout=30
        )
    except Exception as exc:
        if _is_not_found(exc):
            raise PodProbeError(
                "PodDeleted", f"probe pod {where} was deleted while it ran"
            ) from exc
        raise PodProbeError(
            "LogUnavailable", f"cannot read the log of probe pod {where}: {api_error_text(exc)}"
        ) from exc
    report = parse_report(str(log or ""))
    if report is None:
        tail = " | ".join(str(log or "").strip().splitlines()[-5:])
        raise PodProbeError(
            "NoReport",
            f"probe pod {where} ended ({phase}, exit code {_exit_code(pod)}) without a report; "
            f"log tail: {tail or '(empty)'}",
            "the probe image needs sh and psql (postgres:17-alpine works)",
        )
    return report


BatchResult = dict[str, dict[str, Any] | PodProbeError]
"""App → its probe report, or why its container gave none."""


def run_batch_probe(
    api: Any,
    specs: Sequence[PodProbeSpec],
    *,
    poll_interval_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    suffix: str | None = None,
) -> BatchResult:
    """Check every app of `specs` (one namespace, one `batch_key`) in one Pod, a container each.

    Each app gets its own result: a report, or a `PodProbeError` for its container alone (its
    Secret missing, no report) or for the Pod (not created, deleted, timed out). The Pod is
    deleted whatever happens."""
    if len({batch_key(s) for s in specs}) != 1:
        raise ValueError("a batch probe pod checks apps that share namespace and pod settings")
    if len({s.app for s in specs}) != len(specs):
        raise ValueError("an app appears twice in one batch")
    lead = specs[0]
    name = batch_pod_name(suffix or secrets.token_hex(3))
    manifest = build_batch_manifest(specs, name, probe_script())
    warnings: list[str] = []
    try:
        leftovers = delete_probe_pods(api, lead.namespace, [s.app for s in specs])
        if leftovers:
            warnings.append(f"deleted leftover probe pods: {', '.join(leftovers)}")
    except Exception as exc:
        warnings.append(f"could not list/delete leftover probe pods: {api_error_text(exc)}")

    results: BatchResult = {}
    maybe_created = True
    try:
        try:
            api.create_namespaced_pod(lead.namespace, manifest, _request_timeout=30)
        except Exception as exc:
            maybe_created = getattr(exc, "status", None) is None
            error = _create_failed(lead.namespace, name, exc)
            return dict.fromkeys((s.app for s in specs), error)
        results = _wait_and_read_batch(
            api,
            lead,
            name,
            [s.app for s in specs],
            poll_interval_s=poll_interval_s,
            clock=clock,
            sleep=sleep,
        )
    finally:
        if maybe_created:
            try:
                delete_pod(api, name, lead.namespace)
            except Exception as exc:
                warnings.append(
                    f"could not delete probe pod {lead.namespace}/{name}: {api_error_text(exc)}"
                )
    pod_info = {"name": name, "namespace": lead.namespace, "warnings": warnings}
    for report in results.values():
        if isinstance(report, dict):
            report["pod"] = {**pod_info, "container": report.get("app")}
    return results


def _create_failed(namespace: str, name: str, exc: BaseException) -> PodProbeError:
    return PodProbeError(
        "PodCreateFailed",
        f"cannot create pod {namespace}/{name}: {api_error_text(exc)}",
        "the namespace must exist and admit a Pod Security 'restricted' pod; "
        "Pulumi's identity needs create/get/list/delete on pods and get on pods/log there",
    )


def _container_states(pod: Any) -> dict[str, Any]:
    return {str(_get(cs, "name")): cs for cs in _get(pod, "status", "container_statuses") or []}


def _fatal_container(cs: Any) -> tuple[str, str] | None:
    reason = _get(cs, "state", "waiting", "reason")
    message = str(_get(cs, "state", "waiting", "message") or "")
    if reason in FATAL_WAITING_REASONS and not any(
        transient in message for transient in TRANSIENT_WAITING_MESSAGES
    ):
        return str(reason), message
    return None


def _wait_and_read_batch(
    api: Any,
    lead: PodProbeSpec,
    name: str,
    apps: list[str],
    *,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> BatchResult:
    """Poll the Pod; read each container's log as it terminates; settle stuck ones."""
    where = f"{lead.namespace}/{name}"
    deadline = clock() + lead.timeout_seconds
    results: BatchResult = {}
    pod: Any = None
    while len(results) < len(apps):
        try:
            pod = api.read_namespaced_pod(name, lead.namespace, _request_timeout=30)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
            gone = PodProbeError("PodDeleted", f"probe pod {where} was deleted while it ran")
            return {**dict.fromkeys(apps, gone), **results}
        if _get(pod, "status", "reason") == "DeadlineExceeded":
            stopped = PodProbeError(
                "DeadlineExceeded",
                f"probe pod {where} was stopped after activeDeadlineSeconds={lead.timeout_seconds}",
            )
            return {**dict.fromkeys(apps, stopped), **results}
        states = _container_states(pod)
        for app in apps:
            cs = states.get(app)
            if app in results or cs is None:
                continue
            if _get(cs, "state", "terminated") is not None:
                results[app] = _read_container_report(api, lead.namespace, name, app)
            elif (fatal := _fatal_container(cs)) is not None:
                reason, message = fatal
                results[app] = PodProbeError(
                    reason, f"probe pod {where} container {app}: {message}".strip()
                )
        if len(results) == len(apps):
            break
        if clock() >= deadline:
            state = pending_state(pod)
            reason = "Unschedulable" if "Unschedulable" in state else "Timeout"
            late = PodProbeError(
                reason,
                f"probe pod {where} did not finish within {lead.timeout_seconds} s ({state})",
                _REASON_HINTS.get(reason) or _REASON_HINTS["DeadlineExceeded"],
            )
            return {**dict.fromkeys(apps, late), **results}
        sleep(poll_interval_s)
    return results


def _read_container_report(
    api: Any, namespace: str, name: str, container: str
) -> dict[str, Any] | PodProbeError:
    where = f"{namespace}/{name} container {container}"
    try:
        log = api.read_namespaced_pod_log(name, namespace, container=container, _request_timeout=30)
    except Exception as exc:
        if _is_not_found(exc):
            return PodProbeError("PodDeleted", f"probe pod {where} was deleted while it ran")
        return PodProbeError(
            "LogUnavailable", f"cannot read the log of probe pod {where}: {api_error_text(exc)}"
        )
    report = parse_report(str(log or ""))
    if report is None:
        tail = " | ".join(str(log or "").strip().splitlines()[-5:])
        return PodProbeError(
            "NoReport",
            f"probe pod {where} ended without a report; log tail: {tail or '(empty)'}",
            "the probe image needs sh and psql (postgres:17-alpine works)",
        )
    return report


def kubeconfig_source(kubeconfig: str) -> dict[str, Any] | str:
    """`kubernetes:kubeconfig` as pulumi-kubernetes reads it: the file's contents (YAML or JSON)
    → a dict; anything else is a path to a kubeconfig file (`~` expanded)."""
    import yaml  # noqa: PLC0415 - only when a kubeconfig is given

    try:
        doc = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        return doc
    return str(Path(kubeconfig.strip()).expanduser())


def core_api(kube_context: str | None, kubeconfig: str | None = None) -> Any:
    """CoreV1Api for the cluster the stack's kubernetes provider uses: its kubeconfig
    (`kubernetes:kubeconfig`, contents or path) when given, else the default kubeconfig; both with
    `kubernetes:context`. No kubeconfig and no context: in-cluster config."""
    from kubernetes import client, config  # noqa: PLC0415 - heavy, imported where used

    if kubeconfig:
        source = kubeconfig_source(kubeconfig)
        if isinstance(source, dict):
            api_client = config.new_client_from_config_dict(source, context=kube_context)  # type: ignore[no-untyped-call]
        else:
            api_client = config.new_client_from_config(config_file=source, context=kube_context)  # type: ignore[no-untyped-call]
        return client.CoreV1Api(api_client)
    try:
        api_client = config.new_client_from_config(context=kube_context)  # type: ignore[no-untyped-call]
    except config.ConfigException:
        if kube_context:
            raise
        config.load_incluster_config()  # type: ignore[no-untyped-call]
        api_client = client.ApiClient()
    return client.CoreV1Api(api_client)
