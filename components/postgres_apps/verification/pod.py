"""The `pod` runner: short-lived Pods in the apps' namespace run `probe.sh` with psql.

A probe pod is compliant with Pod Security `restricted` and has one container, `probe`, that
checks one app (`run_pod_probe`, a `ConnectivityCheck` used on its own) or every app of a
namespace (`run_batch_probe`, `NamespaceProbe`), a few at a time. Each app's variables come from
that app's Secret exactly as an app reads it, env by `secretKeyRef` per key (optional refs, under
the app's own prefix `P<i>_`); probe.sh hands each app's psql only that app's values. The log
carries one section per app (`@app <i>`), each with its probe report (JSON) as its last line, or
the Secret variables it lacked. The runner creates the Pod, waits, reads the log once, and
deletes the Pod ALWAYS (success, failure, timeout, interrupt).

Why one container and not one per app: the kubelet starts a pod's containers one after another,
and with a container per app the pod's CPU limit, memory and the sessions it opens grew with the
apps; one container starts once, its limits follow the lanes, and its log is read once. (The
47-app gate span went from 39.4 s to 23.3 s with this and a cheaper probe together; the bench of
2026-12-03 did not separate the two: docs/benchmarks.md.)

The builders are pure; the runners take any object with the CoreV1Api methods they use (the
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
BATCH_LIMIT: Final = 50
"""Most apps one probe pod checks (more make more pods, run at the same time). Bounds the pod
object: each app's isolation statement names its peers, so the env grows with the square of the
apps (50 apps: a 324 KB pod, 234 KB of env; the API server takes objects up to 1.5 MB and the
kernel 2 MB of env)."""
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
    "SecretIncomplete": "the app's Secret is missing or lacks a key the apps read "
    "(host, port, dbname, user, password, uri); run pulumi up --refresh to recreate it",
    "CreateContainerConfigError": "the probe container's configuration is refused by the node",
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
    connection_keys: Sequence[str] = ()
    """Secret keys the config marks as connection strings: the probe logs in with each."""
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


SECRET_VARS: Final = tuple(var for var, _key in SECRET_ENV)
PROBE_VAR_PREFIX: Final = "P"
"""App i's variables in a probe pod are `P<i>_<NAME>`; probe.sh maps them back for that app."""
BATCH_SLOTS: Final = 4
"""Apps a probe pod's container probes at once (probe.sh's lanes; the pods of one namespace share
them). The per-app pods ran in the dynamic provider host's four lanes, and the latency figures
stay comparable: ten at once on two cores tripled the median connect time (36 → 142 ms, bench of
2026-12-03)."""
LANE_CPU_LIMIT_MILLI: Final = 500
"""CPU limit per lane: a tight limit throttles psql's start-up (CFS periods of 100 ms) into the
connect time; a probe of one app takes about 0.3 s of CPU."""
LANE_MEMORY_LIMIT_MI: Final = 64


def app_env(spec: PodProbeSpec, table_seed: str) -> list[dict[str, Any]]:
    """One app's probe variables (unprefixed): its Secret's keys by `secretKeyRef`, its statements.

    The refs are optional: a missing Secret or key leaves the variable unset and probe.sh reports
    it for this app alone, where a required ref would keep the whole container from starting. The
    scratch table is named after `table_seed` (`statements.probe_table`): unique per run."""
    env: list[dict[str, Any]] = [
        {
            "name": var,
            "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key, "optional": True}},
        }
        for var, key in SECRET_ENV
    ]
    # the keys marked as connection strings: their names as a value, each key by secretKeyRef
    env += [{"name": "DB_CONN_KEYS", "value": " ".join(spec.connection_keys)}]
    env += [
        {
            "name": f"DB_CONN_{index}",
            "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key, "optional": True}},
        }
        for index, key in enumerate(spec.connection_keys)
    ]
    return [
        *env,
        {"name": "PROBE_APP", "value": spec.app},
        {"name": "PROBE_SSLMODE", "value": spec.sslmode},
        *statement_env(spec, probe_table(table_seed)),
        {"name": "PROBE_ROUNDTRIPS", "value": str(spec.roundtrips)},
        {"name": "PROBE_CONNECT_TIMEOUT", "value": str(spec.connect_timeout_s)},
    ]


def probe_container(
    specs: Sequence[PodProbeSpec], pod: str, script: str, lanes: int
) -> dict[str, Any]:
    """The probe pod's one container: every app's variables under its own prefix (`P<i>_`),
    probe.sh as argument, `lanes` apps probing at once.

    One container instead of one per app (see the module's docstring). Each app still reads its
    Secret by `secretKeyRef` as an app does; probe.sh gives each app's psql only that app's
    values (tests/integration/test_probe.py proves it)."""
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": TMP_DIR},
        {"name": "TMPDIR", "value": TMP_DIR},
    ]
    names: list[str] = []
    for index, spec in enumerate(specs):
        seed = pod if len(specs) == 1 else f"{pod}/{spec.app}"
        entries = app_env(spec, seed)
        names += [e["name"] for e in entries if e["name"] not in names]  # apps differ in DB_CONN_*
        env += [{**e, "name": f"{PROBE_VAR_PREFIX}{index}_{e['name']}"} for e in entries]
    env += [
        {"name": "PROBE_APPS", "value": str(len(specs))},
        {"name": "PROBE_APP_VARS", "value": " ".join(names)},
        {"name": "PROBE_SECRET_VARS", "value": " ".join(SECRET_VARS)},
        {"name": "PROBE_LANES", "value": str(lanes)},
    ]
    lead = specs[0]
    return {
        "name": CONTAINER,
        "image": lead.image,
        "imagePullPolicy": lead.image_pull_policy,
        "command": ["sh", "-c", escape_for_kubernetes(script), "probe"],
        "env": env,
        "securityContext": restricted_container(lead.run_as_user),
        "resources": {
            "requests": {"cpu": lead.cpu_request, "memory": "16Mi", "ephemeral-storage": "1Mi"},
            "limits": {
                "cpu": f"{LANE_CPU_LIMIT_MILLI * lanes}m",
                "memory": f"{LANE_MEMORY_LIMIT_MI * lanes}Mi",
                "ephemeral-storage": "32Mi",
            },
        },
        "volumeMounts": [{"name": "tmp", "mountPath": TMP_DIR}],
    }


def build_probe_manifest(
    specs: Sequence[PodProbeSpec],
    name: str,
    script: str,
    *,
    labels: dict[str, str] | None = None,
    lanes: int = BATCH_SLOTS,
) -> dict[str, Any]:
    """The probe Pod for one app or several apps of one namespace: Pod Security `restricted`, no
    token, no service links, one container (`probe_container`) with an emptyDir for /tmp.

    Pod-wide settings (namespace, deadline, user, extra labels) come from the first spec; the
    caller groups specs that agree on them (`batch_key`). Labels: `probe_labels(app)` for one
    app, else `batch_labels`."""
    if not specs:
        raise ValueError("a probe pod needs at least one app")
    lead = specs[0]
    if labels is None:
        labels = probe_labels(lead.app) if len(specs) == 1 else batch_labels([s.app for s in specs])
    lanes = max(1, min(lanes, len(specs)))
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
            "containers": [probe_container(specs, name, script, lanes)],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}],
        },
    }


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
    """One app in its own probe pod (`<app>-dbcheck-<suffix>`): its report, or its
    `PodProbeError` raised. The pod is deleted whatever happens."""
    name = pod_name(spec.app, suffix or secrets.token_hex(3))
    result = _run_probe_pod(
        api, [spec], name, 1, poll_interval_s=poll_interval_s, clock=clock, sleep=sleep
    )[spec.app]
    if isinstance(result, PodProbeError):
        raise result
    return result


BatchResult = dict[str, dict[str, Any] | PodProbeError]
"""App → its probe report, or why there is none for it."""


def run_batch_probe(
    api: Any,
    specs: Sequence[PodProbeSpec],
    *,
    lanes: int = BATCH_SLOTS,
    poll_interval_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    suffix: str | None = None,
) -> BatchResult:
    """Check every app of `specs` (one namespace, one `batch_key`) in one pod (`dbcheck-<suffix>`),
    `lanes` apps at a time.

    Each app gets its own result: a report, or a `PodProbeError` for that app alone (its Secret
    or a key missing, no report) or for the pod (not created, deleted, timed out). The pod is
    deleted whatever happens."""
    if len({batch_key(s) for s in specs}) != 1:
        raise ValueError("a batch probe pod checks apps that share namespace and pod settings")
    if len({s.app for s in specs}) != len(specs):
        raise ValueError("an app appears twice in one batch")
    name = batch_pod_name(suffix or secrets.token_hex(3))
    return _run_probe_pod(
        api, specs, name, lanes, poll_interval_s=poll_interval_s, clock=clock, sleep=sleep
    )


def _run_probe_pod(
    api: Any,
    specs: Sequence[PodProbeSpec],
    name: str,
    lanes: int,
    *,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> BatchResult:
    """Delete leftovers, create the pod, wait, read every app's result, delete the pod ALWAYS
    (success, failure, timeout, KeyboardInterrupt, also during create)."""
    lead = specs[0]
    apps = [s.app for s in specs]
    manifest = build_probe_manifest(specs, name, probe_script(), lanes=lanes)
    warnings: list[str] = []
    try:
        leftovers = delete_probe_pods(api, lead.namespace, apps)
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
            # An API answer (403, 409, 422 …) means no pod; a lost connection may hide one.
            maybe_created = getattr(exc, "status", None) is None
            return dict.fromkeys(apps, _create_failed(lead.namespace, name, exc))
        results = _wait_and_read(
            api, specs, name, poll_interval_s=poll_interval_s, clock=clock, sleep=sleep
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
            report["pod"] = dict(pod_info)
    return results


def _create_failed(namespace: str, name: str, exc: BaseException) -> PodProbeError:
    return PodProbeError(
        "PodCreateFailed",
        f"cannot create pod {namespace}/{name}: {api_error_text(exc)}",
        "the namespace must exist and admit a Pod Security 'restricted' pod; "
        "Pulumi's identity needs create/get/list/delete on pods and get on pods/log there",
    )


def _fatal_container(cs: Any) -> tuple[str, str] | None:
    reason = _get(cs, "state", "waiting", "reason")
    message = str(_get(cs, "state", "waiting", "message") or "")
    if reason in FATAL_WAITING_REASONS and not any(
        transient in message for transient in TRANSIENT_WAITING_MESSAGES
    ):
        return str(reason), message
    return None


def _wait_and_read(
    api: Any,
    specs: Sequence[PodProbeSpec],
    name: str,
    *,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> BatchResult:
    """Wait for the pod's container to end, then read the log once and split it per app."""
    apps = [s.app for s in specs]
    pod = _await_end(api, specs[0], name, poll_interval_s=poll_interval_s, clock=clock, sleep=sleep)
    if isinstance(pod, PodProbeError):
        return dict.fromkeys(apps, pod)
    where = f"{specs[0].namespace}/{name}"
    try:
        log = str(
            api.read_namespaced_pod_log(
                name, specs[0].namespace, container=CONTAINER, _request_timeout=30
            )
            or ""
        )
    except Exception as exc:
        if _is_not_found(exc):
            gone = PodProbeError("PodDeleted", f"probe pod {where} was deleted while it ran")
            return dict.fromkeys(apps, gone)
        unreadable = PodProbeError(
            "LogUnavailable", f"cannot read the log of probe pod {where}: {api_error_text(exc)}"
        )
        return dict.fromkeys(apps, unreadable)
    sections = split_log(log, len(specs))
    ended = f"{_get(pod, 'status', 'phase')}, exit code {_exit_code(pod)}"
    return {
        spec.app: _app_result(api, spec, where, sections.get(index), ended)
        for index, spec in enumerate(specs)
    }


def _await_end(
    api: Any,
    lead: PodProbeSpec,
    name: str,
    *,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
) -> Any:
    """Poll the pod until it ends: the pod, or the `PodProbeError` that stopped the wait (deleted,
    deadline, a container that cannot start, the timeout)."""
    where = f"{lead.namespace}/{name}"
    deadline = clock() + lead.timeout_seconds
    while True:
        try:
            pod = api.read_namespaced_pod(name, lead.namespace, _request_timeout=30)
        except Exception as exc:
            if not _is_not_found(exc):
                raise
            return PodProbeError("PodDeleted", f"probe pod {where} was deleted while it ran")
        if _get(pod, "status", "reason") == "DeadlineExceeded":
            return PodProbeError(
                "DeadlineExceeded",
                f"probe pod {where} was stopped after activeDeadlineSeconds={lead.timeout_seconds}",
            )
        if _get(pod, "status", "phase") in ("Succeeded", "Failed"):
            return pod
        if (fatal := fatal_state(pod)) is not None:
            reason, message = fatal
            return PodProbeError(reason, f"probe pod {where}: {message}".strip())
        if clock() >= deadline:
            state = pending_state(pod)
            reason = "Unschedulable" if "Unschedulable" in state else "Timeout"
            return PodProbeError(
                reason,
                f"probe pod {where} did not finish within {lead.timeout_seconds} s ({state})",
                _REASON_HINTS.get(reason) or _REASON_HINTS["DeadlineExceeded"],
            )
        sleep(poll_interval_s)


APP_MARKER: Final = "@app "
MISSING_MARKER: Final = "@missing"


def split_log(log: str, count: int) -> dict[int, str]:
    """probe.sh's output in a probe pod → app index → that app's output (`@app <i>` sections).
    Lines before the first marker or under a marker of no app of the pod belong to no app."""
    sections: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in log.splitlines():
        if line.startswith(APP_MARKER):
            index = line.removeprefix(APP_MARKER)
            valid = index.isdigit() and int(index) < count
            current = sections.setdefault(int(index), []) if valid else None
        elif current is not None:
            current.append(line)
    return {i: "\n".join(lines) for i, lines in sections.items()}


def _app_result(
    api: Any, spec: PodProbeSpec, where: str, output: str | None, ended: str
) -> dict[str, Any] | PodProbeError:
    """One app's section of the log → its report, or why there is none."""
    if output is None:
        return PodProbeError(
            "NoReport",
            f"probe pod {where} ended ({ended}) before it probed app {spec.app}",
            "the probe image needs sh and psql (postgres:17-alpine works)",
        )
    for line in output.splitlines():
        if line.startswith(MISSING_MARKER):
            return _secret_incomplete(api, spec, where, line.split()[1:])
    report = parse_report(output)
    if report is None:
        tail = " | ".join(output.strip().splitlines()[-5:])
        return PodProbeError(
            "NoReport",
            f"probe pod {where}, app {spec.app}: ended ({ended}) without a report; "
            f"log tail: {tail or '(empty)'}",
            "the probe image needs sh and psql (postgres:17-alpine works)",
        )
    if report.get("app") != spec.app:  # never judge one app by another's report
        return PodProbeError(
            "NoReport",
            f"probe pod {where}: the section of app {spec.app} holds the report of "
            f"{report.get('app')!r}",
        )
    return report


def _secret_incomplete(
    api: Any, spec: PodProbeSpec, where: str, variables: Sequence[str]
) -> PodProbeError:
    """The app's Secret or some of its keys are missing: said in the kubelet's words for a
    required ref (`secret "…" not found`, `couldn't find key … in Secret …`,
    pkg/kubelet/kubelet_pods.go makeEnvironmentVariables)."""
    keys = [key for var, key in SECRET_ENV if var in variables]
    detail = "; ".join(
        f"couldn't find key {key} in Secret {spec.namespace}/{spec.secret_name}" for key in keys
    )
    if len(keys) == len(SECRET_ENV):
        try:
            api.read_namespaced_secret(spec.secret_name, spec.namespace, _request_timeout=30)
        except Exception as exc:
            if _is_not_found(exc):
                detail = f'secret "{spec.secret_name}" not found'
    return PodProbeError("SecretIncomplete", f"probe pod {where}, app {spec.app}: {detail}")


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
