"""The dynamic provider: serialization, diff, outputs without secrets, delete, failure messages.

Runs against nothing real (the integration tier drives create/update against PostgreSQL).
"""

from __future__ import annotations

import base64
import copy
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pulumi
import pytest
import urllib3
from kubernetes.config import ConfigException
from pulumi.dynamic.dynamic import serialize_provider

import postgres_apps.verification.pod as pod_module
import postgres_apps.verification.provider as provider_module
from postgres_apps.settings import VerificationSettings
from postgres_apps.verification import ConnectivityCheck, ConnectivityCheckArgs, ConnectivityPeer
from postgres_apps.verification.provider import (
    DELETE_UNREACHABLE_ENV,
    INPUT_KEYS,
    OUTPUT_KEYS,
    PEERS_KEY,
    SECRET_KEYS,
    ConnectivityCheckProvider,
    VerificationError,
    changed_keys,
    credentials_hash,
    peers_of,
    run_check,
    safe_names,
)
from postgres_apps.verification.resource import build_props
from postgres_apps.verification.statements import Peer
from tests.unit.conftest import CHECK_TYPE, ProgramMocks, is_secret, run_under_mocks, unwrap
from tests.unit.test_verification_checks import GOOD

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Generated-n8n-Pw-0123456789abcdefghij"


def props(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "app_name": "n8n",
        "namespace": "apps",
        "secret_name": "n8n-db-credentials",
        "host": "postgres-postgresql.data.svc.cluster.local",
        "port": 5432,
        "database": "n8n",
        "username": "n8n",
        "password": PASSWORD,
        "uri": None,
        "sslmode": "prefer",
        "direct_host": "127.0.0.1",
        "direct_port": 15432,
        "peers": [{"database": "paperless", "role": "paperless"}],
        "verification_mode": "direct",
        "image": "docker.io/library/postgres:17-alpine",
        "image_pull_policy": "IfNotPresent",
        "timeout_seconds": 60,
        "latency_budget_ms": 100.0,
        "rerun": "on-change",
        "roundtrips": 20,
        "kube_context": None,
    }
    base.update(changes)
    return base


def old_outputs(p: dict[str, Any]) -> dict[str, Any]:
    """What create() stored: the inputs without secrets, plus the credentials hash."""
    outs = {k: p.get(k) for k in INPUT_KEYS}
    outs["credentials_sha256"] = credentials_hash(p["app_name"], p["password"], p.get("uri"))
    return outs


# -- serialization ---------------------------------------------------------------------------------


def test_provider_pickles_by_reference_and_small() -> None:
    raw = base64.b64decode(serialize_provider(ConnectivityCheckProvider()))
    assert b"postgres_apps.verification.provider" in raw
    assert b"ConnectivityCheckProvider" in raw
    assert len(raw) < 1024, len(raw)  # a reference, not the code or captured clients
    for heavy in (b"psycopg", b"kubernetes", b"VerificationSettings"):
        assert heavy not in raw


LOAD = """
import base64, sys, dill
provider = dill.loads(base64.b64decode(sys.argv[1]))
print(type(provider).__module__, type(provider).__name__)
print(provider.diff("id", {}, {"rerun": "always"}).changes)
"""


# What 0.1.x (components/verification/provider.py before the package moved) wrote into every
# check's `__provider` state: the same call on that commit, base64 as the state holds it.
PICKLE_0_1 = (
    "gASVRQAAAAAAAACMIGNvbXBvbmVudHMudmVyaWZpY2F0aW9uLnByb3ZpZGVylIwZQ29ubmVjdGl2aXR5Q2hlY2tQcm92"
    "aWRlcpSTlCmBlC4="
)


def load_in(cwd: Path, blob: str) -> subprocess.CompletedProcess[str]:
    """Unpickle as the dynamic provider host does: `python -m pulumi.dynamic` in `cwd`."""
    return subprocess.run(
        [sys.executable, "-c", LOAD, blob],
        cwd=cwd,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )


def test_provider_loads_wherever_the_package_is_installed(tmp_path: Path) -> None:
    """Installed, the provider no longer depends on the project directory being sys.path[0]."""
    proc = load_in(tmp_path, serialize_provider(ConnectivityCheckProvider()))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [
        "postgres_apps.verification.provider ConnectivityCheckProvider",
        "True",
    ]


def test_0_1_state_pickle_still_loads_in_the_project() -> None:
    """Stacks deployed by 0.1.x hold the old class path until their next `up` re-pickles it."""
    assert b"components.verification.provider" in base64.b64decode(PICKLE_0_1)
    proc = load_in(REPO, PICKLE_0_1)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == [
        "postgres_apps.verification.provider ConnectivityCheckProvider",
        "True",
    ]


def test_0_1_state_pickle_needs_the_project_dir(tmp_path: Path) -> None:
    """The shim lives in the stack's repository, not in the package (docs/verification.md)."""
    proc = load_in(tmp_path, PICKLE_0_1)
    assert proc.returncode != 0
    assert "No module named 'components'" in proc.stderr


# -- diff ----------------------------------------------------------------------------------------


def diff(olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
    return ConnectivityCheckProvider().diff("n8n-connectivity", olds, news)


def test_no_change_no_rerun_when_on_change() -> None:
    p = props()
    result = diff(old_outputs(p), p)
    assert result.changes is False
    assert result.replaces == []
    assert changed_keys(old_outputs(p), p) == []


def test_rerun_always_always_changes() -> None:
    p = props(rerun="always")
    assert diff(old_outputs(p), p).changes is True


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"password": "rotated-" + PASSWORD}, "password"),
        ({"uri": "postgresql://n8n:x@h:5432/n8n"}, "password"),
        ({"direct_port": 15433}, "direct_port"),
        ({"direct_host": "10.0.0.9"}, "direct_host"),
        ({"host": "pg.other.svc"}, "host"),
        ({"latency_budget_ms": 50.0}, "latency_budget_ms"),
        ({"verification_mode": "pod"}, "verification_mode"),
        ({"image": "postgres:16-alpine"}, "image"),
        ({"timeout_seconds": 30}, "timeout_seconds"),
    ],
)
def test_credentials_endpoint_and_settings_changes_rerun(change: dict[str, Any], key: str) -> None:
    olds = old_outputs(props())
    news = props(**change)
    assert diff(olds, news).changes is True
    assert key in changed_keys(olds, news)


@pytest.mark.parametrize(
    "peers",
    [
        [],  # the other app was removed
        [{"database": "paperless", "role": "paperless"}, {"database": "wiki", "role": "wiki"}],
        [{"database": "04da6b54-80e4-46f7-96ec-b56ff0331ba9", "role": "paperless"}],  # unknown
    ],
)
def test_a_peers_only_change_does_not_rerun_the_check(peers: list[dict[str, str]]) -> None:
    """Adding/removing an app must not re-run every other check (the new app's proves both ways)."""
    olds = old_outputs(props())
    news = props(peers=peers)
    assert diff(olds, news).changes is False
    assert changed_keys(olds, news) == []
    # …but together with another change it does, and `rerun: always` still always does
    assert diff(olds, props(peers=peers, direct_port=15433)).changes is True
    assert diff(old_outputs(props(rerun="always")), props(peers=peers, rerun="always")).changes


def test_peers_are_an_input_but_not_an_output() -> None:
    """Outputs of an unchanged resource are kept as they were: a copy of peers would go stale."""
    assert PEERS_KEY not in INPUT_KEYS
    assert PEERS_KEY not in OUTPUT_KEYS
    assert PEERS_KEY in build_props(args())


def test_peers_input_is_validated() -> None:
    provider = ConnectivityCheckProvider()
    for bad in ("paperless", ["paperless"], [{"database": "paperless"}]):
        result = provider.check({}, props(peers=bad))
        assert [f.property for f in result.failures] == ["peers"], bad
    assert provider.check({}, props()).failures == []
    with pytest.raises(VerificationError, match="malformed peers entry"):
        peers_of(props(peers=[{"database": "paperless", "role": ""}]))
    assert peers_of(props()) == [Peer("paperless", "paperless")]


def test_peer_names_are_safe_names() -> None:
    names = safe_names(props(peers=[{"database": "wiki_db", "role": "wiki_role"}]))
    assert {"wiki_db", "wiki_role"} <= names


def test_unknown_password_during_preview_counts_as_a_change() -> None:
    olds = old_outputs(props())
    news = props(password="04da6b54-80e4-46f7-96ec-b56ff0331ba9")  # rpc.UNKNOWN
    assert diff(olds, news).changes is True


@pytest.mark.parametrize("key", ["password", "uri"])
def test_unknown_object_during_preview_counts_as_a_change(key: str) -> None:
    """The dynamic provider host passes `pulumi.output.UNKNOWN` (not a string) in a preview."""
    from pulumi.output import UNKNOWN  # noqa: PLC0415

    olds = old_outputs(props())
    news = {**props(), key: UNKNOWN}
    assert diff(olds, news).changes is True
    assert "password" in changed_keys(olds, news)


def test_credentials_hash_is_not_the_plain_sha256_of_the_password() -> None:
    import hashlib  # noqa: PLC0415

    h = credentials_hash("n8n", PASSWORD, None)
    assert len(h) == 64
    assert h != hashlib.sha256(PASSWORD.encode()).hexdigest()
    assert h != credentials_hash("other-app", PASSWORD, None)


def test_checked_at_has_microseconds_so_a_rerun_is_always_newer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Tests (e2e rotation, isolation) tell "re-ran" from "kept" by `checked_at` alone."""
    monkeypatch.setattr(provider_module, "_direct", lambda _props: copy.deepcopy(GOOD))
    first = run_check(props()).checked_at
    time.sleep(0.002)
    second = run_check(props()).checked_at
    for value in (first, second):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", value), value
    assert first < second  # the same second, still strictly ordered
    parsed = datetime.strptime(second, "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs(parsed - datetime.now(UTC)) < timedelta(seconds=5)


# -- check -----------------------------------------------------------------------------------------


def test_check_reports_bad_inputs() -> None:
    result = ConnectivityCheckProvider().check(
        {}, props(verification_mode="both", rerun="sometimes", timeout_seconds=0)
    )
    assert sorted(f.property for f in result.failures) == [
        "rerun",
        "timeout_seconds",
        "verification_mode",
    ]
    assert ConnectivityCheckProvider().check({}, props()).failures == []


# -- pod mode through the provider (fake client) ------------------------------------------------


class StuckPodApi:
    """Just enough CoreV1Api for run_pod_probe: the container never starts (image pull)."""

    def __init__(self) -> None:
        self.deleted: list[str] = []
        self.listed: list[str] = []

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self.listed.append(namespace)
        return type("L", (), {"items": []})()

    def create_namespaced_pod(self, namespace: str, body: Any, **kw: Any) -> Any:
        return body

    def read_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> Any:
        waiting = type("W", (), {"reason": "ImagePullBackOff", "message": "pull access denied"})
        state = type("S", (), {"waiting": waiting, "terminated": None})
        cs = type("C", (), {"state": state})
        status = type("T", (), {"phase": "Pending", "container_statuses": [cs], "reason": None})
        return type("P", (), {"status": status})()

    def delete_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> None:
        self.deleted.append(name)


def test_pod_mode_image_pull_failure_is_a_clear_verification_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = StuckPodApi()
    monkeypatch.setattr(pod_module, "core_api", lambda _ctx, _kubeconfig=None: api)
    with pytest.raises(VerificationError) as err:
        run_check(props(verification_mode="pod"))
    text = str(err.value)
    assert text.startswith('app "n8n": the probe pod could not run (ImagePullBackOff): probe pod')
    assert "pull access denied" in text
    assert "verification.image" in text
    assert len(api.deleted) == 1


def test_delete_is_a_noop_in_direct_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """Direct mode made nothing in the cluster: delete must not even build a client.

    Fails if the mode check goes: `boom`'s error then surfaces as a VerificationError."""

    def boom(_ctx: Any, _kubeconfig: Any = None) -> Any:
        raise AssertionError("direct mode must not talk to Kubernetes")

    monkeypatch.setattr(pod_module, "core_api", boom)
    ConnectivityCheckProvider().delete("n8n-connectivity", old_outputs(props()))


class LeftoverPodApi(StuckPodApi):
    """One probe pod left by an interrupted run; deleting it can answer `delete_status`."""

    def __init__(self, delete_status: int | None = None) -> None:
        super().__init__()
        self.delete_status = delete_status

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self.listed.append(f"{namespace} {kw.get('label_selector')}")
        # a batch pod that checks n8n, and one that checks only another app (kept)
        mine = type("M", (), {"name": "dbcheck-abc123", "labels": pod_module.batch_labels(["n8n"])})
        other = type("M", (), {"name": "dbcheck-def456", "labels": pod_module.batch_labels(["x"])})
        return type("L", (), {"items": [type("P", (), {"metadata": m})() for m in (mine, other)]})()

    def delete_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> None:
        self.deleted.append(name)
        if self.delete_status is not None:
            raise ApiError(self.delete_status)


class ApiError(Exception):
    """What kubernetes.client's ApiException carries that the runner reads: an HTTP status."""

    def __init__(self, status: int) -> None:
        super().__init__(f"({status})")
        self.status = status
        self.reason = {403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}[status]


def pod_delete(monkeypatch: pytest.MonkeyPatch, api_or_error: Any) -> None:
    def client(_ctx: Any, _kubeconfig: Any = None) -> Any:
        if isinstance(api_or_error, BaseException):
            raise api_or_error
        return api_or_error

    monkeypatch.setattr(pod_module, "core_api", client)
    ConnectivityCheckProvider().delete(
        "n8n-connectivity", old_outputs(props(verification_mode="pod"))
    )


@pytest.mark.parametrize("delete_status", [None, 404])
def test_delete_removes_a_leftover_probe_pod_in_pod_mode(
    monkeypatch: pytest.MonkeyPatch, delete_status: int | None
) -> None:
    """Deleted by this app's label; a pod already gone (404) is the same as deleted."""
    api = LeftoverPodApi(delete_status)
    pod_delete(monkeypatch, api)
    assert api.listed == [f"apps {pod_module.probes_selector()}"]
    assert api.deleted == ["dbcheck-abc123"]


@pytest.mark.parametrize(("status", "shown"), [(403, "403 Forbidden"), (500, "500 Internal")])
def test_delete_fails_when_the_api_server_refuses(
    monkeypatch: pytest.MonkeyPatch, status: int, shown: str
) -> None:
    """An API answer is never 'unreachable', even with the switch set: the pod may still run."""
    monkeypatch.setenv(DELETE_UNREACHABLE_ENV, "true")
    with pytest.raises(VerificationError) as err:
        pod_delete(monkeypatch, LeftoverPodApi(status))
    text = str(err.value)
    assert text.startswith(
        f'app "n8n": cannot delete leftover probe pods in namespace "apps": {shown}'
    ), text
    assert ("list and delete on pods" in text) is (status == 403)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError("[Errno 111] Connection refused"),
        urllib3.exceptions.MaxRetryError(  # what the client raises when nothing listens
            urllib3.HTTPSConnectionPool("127.0.0.1", 6443), "/api/v1/namespaces/apps/pods"
        ),
        ConfigException("Invalid kube-config file. No configuration found."),
    ],
)
def test_delete_on_an_unreachable_cluster_fails_unless_the_kubernetes_switch_is_set(
    monkeypatch: pytest.MonkeyPatch, error: Exception
) -> None:
    """Like pulumi-kubernetes' Delete: refuse by default, say how to pass if the cluster is gone."""
    monkeypatch.delenv(DELETE_UNREACHABLE_ENV, raising=False)
    with pytest.raises(VerificationError) as err:
        pod_delete(monkeypatch, error)
    text = str(err.value)
    assert text.startswith('app "n8n": cannot delete leftover probe pods in namespace "apps": ')
    assert f"re-run with {DELETE_UNREACHABLE_ENV}=true" in text
    monkeypatch.setenv(DELETE_UNREACHABLE_ENV, "false")
    with pytest.raises(VerificationError):
        pod_delete(monkeypatch, error)
    monkeypatch.setenv(DELETE_UNREACHABLE_ENV, "true")
    pod_delete(monkeypatch, error)  # the cluster is gone for good: the check leaves the state


def test_a_bug_in_delete_is_never_taken_for_an_unreachable_cluster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(DELETE_UNREACHABLE_ENV, "true")
    with pytest.raises(VerificationError, match="'NoneType' object is not subscriptable"):
        pod_delete(monkeypatch, TypeError("'NoneType' object is not subscriptable"))


# -- the resource --------------------------------------------------------------------------------


def args(**changes: Any) -> ConnectivityCheckArgs:
    base: dict[str, Any] = {
        "app_name": "n8n",
        "namespace": "apps",
        "secret_name": "n8n-db-credentials",
        "host": "postgres-postgresql.data.svc.cluster.local",
        "port": 5432,
        "database": "n8n",
        "username": "n8n",
        "password": PASSWORD,
        "sslmode": "prefer",
        "direct_host": "127.0.0.1",
        "direct_port": 15432,
        "peers": [ConnectivityPeer(database="paperless", role="paperless_role")],
        "settings": VerificationSettings(mode="direct", latency_budget_ms=80.0, rerun="always"),
        "kube_context": "ctx",
    }
    base.update(changes)
    return ConnectivityCheckArgs(**base)


def test_props_cover_every_provider_input_and_output() -> None:
    keys = set(build_props(args()))
    assert set(INPUT_KEYS) | SECRET_KEYS <= keys
    assert not set(INPUT_KEYS) & SECRET_KEYS
    assert set(OUTPUT_KEYS) <= keys


def test_resource_registration_keeps_secrets_secret() -> None:
    def body() -> None:
        ConnectivityCheck("n8n-check", args(uri="postgresql://n8n:pw@h:5432/n8n"))

    run = run_under_mocks(body, ProgramMocks())
    reg = run.monitor.one(CHECK_TYPE, "n8n-check")
    assert is_secret(reg.inputs["password"])
    assert is_secret(reg.inputs["uri"])
    assert is_secret(reg.inputs["__provider"])
    plain = unwrap(reg.inputs)
    assert plain["password"] == PASSWORD
    assert plain["verification_mode"] == "direct"
    assert plain["latency_budget_ms"] == 80.0
    assert plain["rerun"] == "always"
    assert plain["kube_context"] == "ctx"
    assert plain["peers"] == [{"database": "paperless", "role": "paperless_role"}]
    assert "probe_run" not in reg.inputs  # None (a check on its own) is not sent
    for key in set(INPUT_KEYS) - {"probe_run"}:
        assert not is_secret(reg.inputs[key]), key
    assert PASSWORD not in json.dumps({k: v for k, v in plain.items() if k != "password"})


def test_an_allow_list_change_reruns_the_check() -> None:
    olds = old_outputs(props(allowed_databases=["reporting"]))
    assert diff(olds, props(allowed_databases=["reporting"])).changes is False
    assert changed_keys(olds, props(allowed_databases=[])) == ["allowed_databases"]
    assert changed_keys(olds, props(allowed_databases=["reporting", "wiki"])) == [
        "allowed_databases"
    ]
    # a state written before the input existed: missing is the empty list, no spurious re-run
    before = old_outputs(props())
    del before["allowed_databases"]
    assert changed_keys(before, props(allowed_databases=[])) == []
    assert changed_keys(before, props(allowed_databases=["reporting"])) == ["allowed_databases"]


def test_the_allow_list_is_validated_and_its_names_are_safe() -> None:
    provider = ConnectivityCheckProvider()
    for bad in ("reporting", [""], [3]):
        result = provider.check({}, props(allowed_databases=bad))
        assert [f.property for f in result.failures] == ["allowed_databases"], bad
    assert provider.check({}, props(allowed_databases=["reporting"])).failures == []
    assert "reporting" in safe_names(props(allowed_databases=["reporting"]))


def test_the_allow_list_is_a_sorted_plain_input_and_output() -> None:
    settings = VerificationSettings(allowed_databases=("wiki", "reporting", "wiki"))
    built = build_props(args(settings=settings))
    assert built["allowed_databases"] == ["reporting", "wiki"]  # reordering is no change
    assert "allowed_databases" in INPUT_KEYS  # copied into the outputs (names, not secret)
