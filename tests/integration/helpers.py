"""Helpers for the integration tests: run either runner against the test server, then judge."""

from __future__ import annotations

import atexit
import functools
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postgres_apps.verification.direct import DirectTarget, run_direct_probe
from postgres_apps.verification.judgement import judge
from postgres_apps.verification.pod import (
    PROBE_SCRIPT,
    PodProbeSpec,
    app_env,
    build_probe_manifest,
    split_log,
)
from postgres_apps.verification.provider import with_asked_keys
from postgres_apps.verification.report import CheckOutcome, Verdict
from postgres_apps.verification.statements import Peer

from .pg_server import PgServer, ProvisionedApp

GENEROUS_BUDGET_MS = 60_000.0
"""Good cases must not depend on this (shared, loaded) machine's timings; the budget logic has
its own test with a budget of 0 ms."""


@dataclass(frozen=True)
class AppPair:
    """The app under test and one other app (for isolation)."""

    app: ProvisionedApp
    other: ProvisionedApp


def peers_of(apps: Sequence[ProvisionedApp]) -> list[Peer]:
    """The isolation peers (database and role) of these other apps."""
    return [Peer(database=a.database, role=a.role) for a in apps]


def secret_uri(
    server: PgServer, app: ProvisionedApp, host: str, password: str | None = None
) -> str:
    """The Secret's uri, built by the real Secret builder (postgres_apps.credentials)."""
    from postgres_apps.credentials import postgres_uri  # noqa: PLC0415

    return postgres_uri(
        host=host,
        port=server.port,
        dbname=app.database,
        user=app.role,
        password=password if password is not None else app.password,
        sslmode="prefer",
    )


def run_direct(
    server: PgServer,
    app: ProvisionedApp,
    peers: Sequence[Peer],
    *,
    password: str | None = None,
    uri: str | None = None,
    port: int | None = None,
    allowed: Sequence[str] = (),
    connection_strings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    return run_direct_probe(
        DirectTarget(
            connection_strings=dict(connection_strings or {}),
            app=app.name,
            host=server.host,
            port=port or server.port,
            database=app.database,
            user=app.role,
            password=password if password is not None else app.password,
            sslmode="prefer",
            uri=uri,
            secret_host=server.host,
            secret_port=port or server.port,
            peers=list(peers),
            allowed_databases=list(allowed),
            connect_timeout_s=3,
            roundtrips=10,
        )
    )


READ_ONLY_ROOT = (
    "mount --bind / / && mount -o remount,bind,ro / && mount -t tmpfs -o size=16m tmpfs /tmp"
    ' && exec "$@"'
)


def run_script(
    server: PgServer,
    app: ProvisionedApp,
    peers: Sequence[Peer],
    *,
    password: str | None = None,
    uri: str | None = None,
    host: str = "localhost",
    port: int | None = None,
    bin_dir: Path | None = None,
    as_uid: int | None = None,
    read_only_root: bool = False,
    allowed: Sequence[str] = (),
    connection_strings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """probe.sh outside a pod, with the env a pod gets from the Secret; DNS against localhost.

    `bin_dir`: run with that directory as the whole PATH (see `busybox_bin_dir`).
    `as_uid`: run as that uid/gid (no passwd entry needed, like the pod's runAsUser); needs root.
    `read_only_root`: in a private mount namespace, `/` read-only and a fresh 16 MiB tmpfs on
    `/tmp` (like readOnlyRootFilesystem + the emptyDir); needs root.
    """
    pw = password if password is not None else app.password
    env = {
        "PATH": str(bin_dir) if bin_dir else os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "DB_HOST": host,
        "DB_PORT": str(port or server.port),
        "DB_NAME": app.database,
        "DB_USER": app.role,
        "DB_PASSWORD": pw,
        "DB_URI": uri if uri is not None else secret_uri(server, app, host, pw),
        "PROBE_APP": app.name,
        "PROBE_SSLMODE": "prefer",
        # the statements exactly as the pod spec sets them (they hold no `$`, so the kubelet's
        # expansion gives them back unchanged: a unit test asserts that)
        **_statement_env(app, peers, allowed),
        "PROBE_ROUNDTRIPS": "10",
        "PROBE_CONNECT_TIMEOUT": "3",
        # as the pod spec gives them (`pod.app_env`): names, then each value from the Secret
        "DB_CONN_KEYS": " ".join(connection_strings or {}),
        **{f"DB_CONN_{i}": v for i, v in enumerate((connection_strings or {}).values())},
    }
    proc = subprocess.run(
        [
            *(
                ["unshare", "--mount", "--propagation", "private", "sh", "-c", READ_ONLY_ROOT, "sh"]
                if read_only_root
                else []
            ),
            *(
                ["setpriv", f"--reuid={as_uid}", f"--regid={as_uid}", "--clear-groups"]
                if as_uid is not None
                else []
            ),
            str(bin_dir / "sh") if bin_dir else "sh",
            # The script's text as an argument, as the pod gets it (no file to read: under
            # read_only_root only a fresh /tmp is there, and the checkout may live in /tmp).
            "-c",
            PROBE_SCRIPT.read_text(),
            "probe.sh",
        ],
        env=env,
        cwd="/",  # a container's working directory; the checkout may be hidden by the fresh /tmp
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no output; stderr: {proc.stderr}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert pw not in proc.stdout, "the probe printed the password"
    return report


def _statement_env(
    app: ProvisionedApp, peers: Sequence[Peer], allowed: Sequence[str]
) -> dict[str, str]:
    """The PROBE_*_SQL variables of the pod spec the pod runner would build for this app."""
    spec = PodProbeSpec(
        app=app.name,
        namespace="apps",
        secret_name="s",
        image="i",
        peers=list(peers),
        allowed_databases=list(allowed),
    )
    env = app_env(spec, f"{app.name}-dbcheck-{secrets.token_hex(3)}")
    return {
        e["name"]: e["value"]
        for e in env
        if e["name"].endswith("_SQL") or e["name"] == "PROBE_CRUD_TABLE"
    }


@dataclass(frozen=True)
class PodApp:
    """One app of a probe pod run outside a pod: its Secret's data as the kubelet would read it."""

    app: ProvisionedApp
    peers: Sequence[Peer]
    secret: Mapping[str, str]


def secret_data(server: PgServer, app: ProvisionedApp, host: str = "localhost") -> dict[str, str]:
    """The keys the Secret builder writes (the ones the probe reads)."""
    return {
        "host": host,
        "port": str(server.port),
        "dbname": app.database,
        "user": app.role,
        "password": app.password,
        "uri": secret_uri(server, app, host),
    }


def kubelet_env(
    container: Mapping[str, Any], secrets_: Mapping[str, Mapping[str, str]]
) -> dict[str, str]:
    """A container's env as the kubelet makes it: values as given (after `$(VAR)` expansion,
    which the pod builder's escaping undoes), `secretKeyRef`s from `secrets_` (Secret name →
    data); an optional ref to a missing Secret or key is left out, a required one fails."""
    env: dict[str, str] = {}
    for entry in container["env"]:
        if "value" in entry:
            env[entry["name"]] = str(entry["value"]).replace("$$", "$")
            continue
        ref = entry["valueFrom"]["secretKeyRef"]
        value = secrets_.get(ref["name"], {}).get(ref["key"])
        if value is None:
            assert ref.get("optional"), f"required ref {ref} would stop the container"
            continue
        env[entry["name"]] = value
    return env


def run_pod_script(
    server: PgServer,
    members: Sequence[PodApp],
    *,
    lanes: int = 2,
    path: str | None = None,
) -> dict[int, str]:
    """probe.sh as a probe pod's container runs it for these apps (the env the pod builder makes,
    filled as the kubelet would) → app index → that app's section of the output."""
    specs = [
        PodProbeSpec(
            app=m.app.name,
            namespace="apps",
            secret_name=f"{m.app.name}-db-credentials",
            image="i",
            peers=list(m.peers),
            roundtrips=10,
            connect_timeout_s=3,
        )
        for m in members
    ]
    manifest = build_probe_manifest(specs, f"dbcheck-{secrets.token_hex(3)}", "", lanes=lanes)
    [container] = manifest["spec"]["containers"]
    env = kubelet_env(
        container, {s.secret_name: m.secret for s, m in zip(specs, members, strict=True)}
    )
    env |= {
        "PATH": path or os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tempfile.gettempdir(),
        "TMPDIR": tempfile.gettempdir(),
    }
    proc = subprocess.run(
        [shutil.which("sh", path=env["PATH"]) or "sh", "-c", PROBE_SCRIPT.read_text(), "probe"],
        env=env,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    for m in members:
        assert m.app.password not in proc.stdout, "the probe printed a password"
    return split_log(proc.stdout, len(members))


BUSYBOX_APPLETS = (
    "sh",
    "sed",
    "tr",
    "date",
    "cut",
    "sort",
    "mktemp",
    "head",
    "rm",
    "mkdir",
    "cat",
    "nslookup",
)


@functools.cache
def busybox_bin_dir(pg_bin: Path) -> Path:
    """A PATH shaped like postgres:17-alpine: busybox applets, getent (musl-utils there), psql.

    Fails the test (never skips) when busybox is missing: `apt-get install busybox`.
    """
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox is not installed (apt-get install busybox)", pytrace=False)
    getent = shutil.which("getent")
    assert getent is not None
    d = Path(tempfile.mkdtemp(prefix="pgapps-it-busybox-"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    links = {a: Path(busybox) for a in BUSYBOX_APPLETS}
    links |= {"getent": Path(getent), "psql": pg_bin / "psql"}
    for name, target in links.items():
        (d / name).symlink_to(target)
    return d


RUNNERS = ("direct", "pod", "pod-busybox")
"""`pod` runs probe.sh with the system's sh (dash) and coreutils; `pod-busybox` with busybox."""


def run(
    runner: str,
    server: PgServer,
    app: ProvisionedApp,
    peers: Sequence[Peer],
    *,
    budget_ms: float = GENEROUS_BUDGET_MS,
    **kwargs: Any,
) -> Verdict:
    """Either runner, then the one shared judge (told the connection keys, as the provider
    tells it: `provider.with_asked_keys`)."""
    if runner == "direct":
        report = run_direct(server, app, peers, **kwargs)
    elif runner == "pod-busybox":
        bin_dir = busybox_bin_dir(server.bin)
        report = run_script(server, app, peers, bin_dir=bin_dir, **kwargs)
    else:
        report = run_script(server, app, peers, **kwargs)
    asked = {"connection_keys": list(kwargs.get("connection_strings") or {})}
    return judge(with_asked_keys(report, asked), latency_budget_ms=budget_ms)


def outcome(verdict: Verdict, name: str) -> CheckOutcome:
    return next(c for c in verdict.checks if c.name == name)


def check_inputs(server: PgServer, apps: AppPair) -> dict[str, Any]:
    """A ConnectivityCheck's inputs in direct mode, as the engine hands them over (plain)."""
    return {
        "app_name": apps.app.name,
        "namespace": "apps",
        "secret_name": f"{apps.app.name}-db-credentials",
        "host": server.host,
        "port": server.port,
        "database": apps.app.database,
        "username": apps.app.role,
        "password": apps.app.password,
        "uri": secret_uri(server, apps.app, server.host),
        "sslmode": "prefer",
        "direct_host": server.host,
        "direct_port": server.port,
        "peers": [{"database": apps.other.database, "role": apps.other.role}],
        "verification_mode": "direct",
        "image": "docker.io/library/postgres:17-alpine",
        "image_pull_policy": "IfNotPresent",
        "timeout_seconds": 30,
        "latency_budget_ms": GENEROUS_BUDGET_MS,
        "rerun": "on-change",
        "roundtrips": 10,
        "kube_context": None,
        "allowed_databases": [],
    }
