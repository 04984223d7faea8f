"""Retire with a tested copy: `deletion: drop` takes a verified `pg_dump` before anything drops.

When an app whose last policy was `drop` leaves the config, the program (which reads the previous
`managedApps`, see `retention.py`) registers one `RetirementCopy` for it. Its create runs
`pg_dump -Fc` of the app's database on the Pulumi host, reads the dump back with
`pg_restore --list` (it must be a custom-format archive of that database), and records its size
and SHA-256. The engine deletes the app's role and database only after the program has finished,
and the program finishes only after every create has returned (the Python SDK waits for its
outstanding registrations); a copy that fails fails the program, and a failed program makes the
engine skip every delete: nothing is dropped without a verified copy. The copies' records are the
stack output `retirementCopies`, carried from run to run.

Deleting a `RetirementCopy` (the run after the retirement, when the app is gone from the previous
`managedApps` too) never touches the dump: the file is the point.

Not covered: `pulumi destroy` runs no program, so it drops `drop` apps without a copy (the
runbook says so); the dump runs where Pulumi runs, not as a pod in the cluster.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pulumi
import pulumi.dynamic

OUTPUT_NAME: Final = "retirementCopies"
RUNBOOK: Final = "docs/runbooks/postgres-connectivity.md#retiring-an-app"
DUMP_TIMEOUT_SECONDS: Final = 3600
RECORD_KEYS: Final = (
    "file",
    "size_bytes",
    "sha256",
    "toc_entries",
    "table_data",
    "taken_at",
    "dump_ms",
)
"""What a copy's record holds (the `retirementCopies` output, per app)."""


SCRIPT: Final = Path(__file__).with_name("retirement.sh")
"""The one set of commands that takes and checks a copy, on the host and in the pod alike."""
MOUNT_PATH: Final = "/copies"
CONTAINER: Final = "copy"


class CopyFailedError(RuntimeError):
    """The copy could not be taken or did not verify: the database is not dropped."""


@dataclass(frozen=True)
class CopyTarget:
    """Which database to copy, through which admin connection, to where.

    Direct: `host`/`port` are the admin endpoint and `directory` a directory on the Pulumi host.
    Pod: `host`/`port` are the server as the cluster sees it and `directory` is ignored (the
    copy goes to the claim, mounted at `MOUNT_PATH`)."""

    app: str
    database: str
    host: str
    port: int
    user: str
    sslmode: str
    directory: str


@dataclass(frozen=True)
class CopyPod:
    """Pod mode: where the copy pod runs and what it mounts (`retirement.persistentVolumeClaim`)."""

    namespace: str
    """The admin Secret's namespace (`data`): the pod reads the admin password from there."""
    claim: str
    secret_name: str
    secret_key: str
    image: str
    image_pull_policy: str = "IfNotPresent"
    run_as_user: int = 70
    kube_context: str | None = None
    start_timeout_seconds: int = 120
    """How long the pod may stay Pending (`verification.timeoutSeconds`): a claim that does not
    exist or cannot bind fails the copy, rather than the dump's own hour."""


def _refuse(target: CopyTarget, why: str) -> CopyFailedError:
    return CopyFailedError(
        f'retirement copy of app "{target.app}" (database "{target.database}") failed: {why}. '
        "Nothing was dropped: the database and its role stay until a copy verifies. Fix the "
        "cause and run pulumi up again; if the database is already gone, list the app in "
        f"postgres-apps:retired. See {RUNBOOK}."
    )


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def copy_file_name(database: str, now: datetime | None = None) -> tuple[str, str]:
    """(file name, UTC time stamp) of a new copy: `<database>-<YYYYmmddTHHMMSSZ>.dump`."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{database}-{stamp}.dump", stamp


def parse_copy_output(target: CopyTarget, stdout: str) -> dict[str, Any]:
    """Size, SHA-256 and table of contents from `retirement.sh`'s output, checked once more
    (its last line, and the listing's own database name)."""
    lines = stdout.splitlines()
    result = next((line for line in reversed(lines) if line.startswith("==copy ")), None)
    if result is None or "==list" not in lines:
        raise _refuse(target, f"the copy script reported no result: {_last_line(stdout)}")
    _, size, digest = result.split()
    listing = lines[lines.index("==list") + 1 : lines.index(result)]
    header = next((line for line in listing if re.match(r";\s+dbname:", line, re.I)), "")
    if header.split(":", 1)[-1].strip() != target.database:
        raise _refuse(target, f"the dump's listing does not name {target.database!r}")
    entries = [line for line in listing if line.strip() and not line.startswith(";")]
    return {
        "size_bytes": int(size),
        "sha256": digest,
        "toc_entries": len(entries),
        "table_data": sum(" TABLE DATA " in line for line in entries),
    }


def _libpq_env(target: CopyTarget) -> dict[str, str]:
    return {
        "PGHOST": target.host,
        "PGPORT": str(target.port),
        "PGUSER": target.user,
        "PGSSLMODE": target.sslmode,
        "PGCONNECT_TIMEOUT": "10",
    }


def take_copy(target: CopyTarget, password: str, now: datetime | None = None) -> dict[str, Any]:
    """Direct mode: run `retirement.sh` on the Pulumi host; return the verified copy's record.

    The password travels in the child's environment (`PGPASSWORD`), never on a command line."""
    if shutil.which("pg_dump") is None or shutil.which("pg_restore") is None:
        raise _refuse(
            target,
            "pg_dump/pg_restore not found on the Pulumi host (install the PostgreSQL client, "
            "at least the server's major version)",
        )
    directory = Path(target.directory).expanduser().absolute()
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        where = f"postgres-apps:retirement.directory {directory}"
        raise _refuse(target, f"cannot create {where}: {err}") from err
    name, stamp = copy_file_name(target.database, now)
    final = directory / name
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **_libpq_env(target)}
    started = time.monotonic()
    done = subprocess.run(  # noqa: S603 - a fixed script, arguments never go through a shell
        ["sh", str(SCRIPT), target.database, str(final)],  # noqa: S607 - sh from PATH
        env={**env, "PGPASSWORD": password},
        capture_output=True,
        text=True,
        timeout=DUMP_TIMEOUT_SECONDS,
        check=False,
    )
    dump_ms = round((time.monotonic() - started) * 1000)
    if done.returncode != 0:
        raise _refuse(target, f"exit code {done.returncode}: {_last_line(done.stderr)}")
    record = parse_copy_output(target, done.stdout)
    record.update({"file": str(final), "taken_at": stamp, "dump_ms": dump_ms})
    final.with_name(final.name + ".json").write_text(
        json.dumps({"app": target.app, "database": target.database, **record}, indent=2) + "\n"
    )
    return record


def build_copy_pod(target: CopyTarget, pod: CopyPod, name: str, file_name: str) -> dict[str, Any]:
    """The copy Pod: Pod Security `restricted`, the admin password from its Secret (it never
    passes through Pulumi), the claim mounted at `MOUNT_PATH`."""
    from postgres_apps.verification.pod import (  # noqa: PLC0415
        escape_for_kubernetes,
        restricted_container,
    )

    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in _libpq_env(target).items()]
    env.append(
        {
            "name": "PGPASSWORD",
            "valueFrom": {"secretKeyRef": {"name": pod.secret_name, "key": pod.secret_key}},
        }
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": pod.namespace,
            "labels": {
                "app.kubernetes.io/name": "postgres-apps",
                "app.kubernetes.io/component": "retirement-copy",
                "postgres-apps/app": target.app,
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": DUMP_TIMEOUT_SECONDS,
            "automountServiceAccountToken": False,
            "enableServiceLinks": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": pod.run_as_user,
                "runAsGroup": pod.run_as_user,
                "fsGroup": pod.run_as_user,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": CONTAINER,
                    "image": pod.image,
                    "imagePullPolicy": pod.image_pull_policy,
                    "command": [
                        "sh",
                        "-c",
                        escape_for_kubernetes(SCRIPT.read_text()),
                        "retirement.sh",
                        target.database,
                        f"{MOUNT_PATH}/{file_name}",
                    ],
                    "env": env,
                    "securityContext": restricted_container(pod.run_as_user),
                    "volumeMounts": [{"name": "copies", "mountPath": MOUNT_PATH}],
                }
            ],
            "volumes": [{"name": "copies", "persistentVolumeClaim": {"claimName": pod.claim}}],
        },
    }


def take_copy_in_pod(
    target: CopyTarget,
    pod: CopyPod,
    api: Any,
    now: datetime | None = None,
    poll_interval_s: float = 0.5,
) -> dict[str, Any]:
    """Pod mode: run `retirement.sh` as a pod on the claim; the pod is deleted whatever happens."""
    from postgres_apps.verification.pod import (  # noqa: PLC0415
        api_error_text,
        delete_pod,
        fatal_state,
        pending_state,
    )

    file_name, stamp = copy_file_name(target.database, now)
    name = f"retire-copy-{target.app}"[:56] + "-" + stamp[-7:-1].lower()
    where = f"{pod.namespace}/{name}"
    started = time.monotonic()
    try:
        api.create_namespaced_pod(
            pod.namespace, build_copy_pod(target, pod, name, file_name), _request_timeout=30
        )
    except Exception as exc:
        raise _refuse(target, f"cannot create pod {where}: {api_error_text(exc)}") from exc
    try:
        while True:
            status = api.read_namespaced_pod(name, pod.namespace, _request_timeout=30)
            phase = getattr(getattr(status, "status", None), "phase", None)
            if phase in ("Succeeded", "Failed"):
                break
            fatal = fatal_state(status)
            if fatal is not None:
                raise _refuse(target, f"copy pod {where}: {fatal[0]}: {fatal[1]}")
            elapsed = time.monotonic() - started
            if (phase == "Pending" and elapsed > pod.start_timeout_seconds) or (
                elapsed > DUMP_TIMEOUT_SECONDS
            ):
                raise _refuse(
                    target,
                    f"copy pod {where} did not finish within {round(elapsed)} s "
                    f"({pending_state(status)}); the claim {pod.namespace}/{pod.claim} must exist "
                    "and be bound (postgres-apps:retirement.persistentVolumeClaim)",
                )
            time.sleep(poll_interval_s)
        log = str(
            api.read_namespaced_pod_log(
                name, pod.namespace, container=CONTAINER, _request_timeout=30
            )
            or ""
        )
    finally:
        delete_pod(api, name, pod.namespace)
    dump_ms = round((time.monotonic() - started) * 1000)
    if phase != "Succeeded":
        raise _refuse(target, f"copy pod {where} failed: {_last_line(log)}")
    record = parse_copy_output(target, log)
    claim = f"{pod.namespace}/{pod.claim}"
    record.update({"file": f"pvc://{claim}/{file_name}", "taken_at": stamp, "dump_ms": dump_ms})
    return record


TARGET_KEYS: Final = ("app", "database", "host", "port", "user", "sslmode", "directory")
POD_KEYS: Final = (
    "namespace",
    "claim",
    "secret_name",
    "secret_key",
    "image",
    "image_pull_policy",
    "run_as_user",
    "kube_context",
    "start_timeout_seconds",
)


class RetirementCopyProvider(pulumi.dynamic.ResourceProvider):
    """Takes the copy on create; never changes it; deleting it leaves the dump in place."""

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        target = CopyTarget(**{k: props[k] for k in TARGET_KEYS})
        target = replace(target, port=int(target.port))
        pod_props = props.get("pod")
        if pod_props:
            from postgres_apps.verification.pod import core_api  # noqa: PLC0415

            pod = CopyPod(**{k: pod_props.get(k) for k in POD_KEYS})
            pod = replace(
                pod,
                run_as_user=int(pod.run_as_user),
                start_timeout_seconds=int(pod.start_timeout_seconds),
            )
            api = core_api(pod.kube_context, props.get("kubeconfig") or None)
            record = take_copy_in_pod(target, pod, api)
        else:
            record = take_copy(target, str(props["password"]))
        secret = ("password", "kubeconfig")
        outs = {k: v for k, v in props.items() if k not in secret}
        return pulumi.dynamic.CreateResult(id_=record["sha256"], outs={**outs, **record})

    def diff(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        return pulumi.dynamic.DiffResult(changes=False)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """The dump stays: it is the only copy of a dropped database."""


class RetirementCopy(pulumi.dynamic.Resource, module="retirement", name="RetirementCopy"):
    """A verified `pg_dump` of a retiring app's database (see the module docstring)."""

    file: pulumi.Output[str]
    size_bytes: pulumi.Output[int]
    sha256: pulumi.Output[str]
    toc_entries: pulumi.Output[int]
    table_data: pulumi.Output[int]
    taken_at: pulumi.Output[str]
    dump_ms: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        target: CopyTarget,
        password: pulumi.Input[str] | None,
        opts: pulumi.ResourceOptions | None = None,
        *,
        pod: CopyPod | None = None,
        kubeconfig: pulumi.Input[str] | None = None,
    ) -> None:
        """Direct mode needs the admin `password`; pod mode reads it from the admin Secret in
        the cluster (`pod`), with `kubeconfig` (a secret) for the API if given."""
        props: dict[str, Any] = {
            **asdict(target),
            "password": None if pod else pulumi.Output.secret(password or ""),
            "pod": asdict(pod) if pod else None,
            "kubeconfig": pulumi.Output.secret(kubeconfig) if kubeconfig else None,
            **dict.fromkeys(RECORD_KEYS),
        }
        super().__init__(RetirementCopyProvider(), name, props, opts)


def record_of(copy: RetirementCopy, target: CopyTarget) -> pulumi.Output[dict[str, Any]]:
    """The copy's entry in `retirementCopies`."""
    return pulumi.Output.all(
        copy.file,
        copy.size_bytes,
        copy.sha256,
        copy.toc_entries,
        copy.table_data,
        copy.taken_at,
        copy.dump_ms,
    ).apply(
        lambda v: {
            "database": target.database,
            "file": v[0],
            "bytes": v[1],
            "sha256": v[2],
            "tocEntries": v[3],
            "tableData": v[4],
            "takenAt": v[5],
            "dumpMs": v[6],
        }
    )
