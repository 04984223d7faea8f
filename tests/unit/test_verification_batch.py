"""One probe pod for a namespace's apps (`pod.run_batch_probe`, `NamespaceProbe`), with a fake API.

The fake replays pod states per container, so each path — every app reports, one app's Secret
is missing, the pod is deleted, the deadline passes, the create is refused — can be checked for
what the design promises: each app gets its own result, one app's failure hides no other app's
report, and the pod is deleted whatever happens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

import pytest

from postgres_apps.verification import namespace_probe as ns_probe
from postgres_apps.verification import pod as pod_module
from postgres_apps.verification.pod import (
    BATCH_LIMIT,
    SECRET_ENV,
    PodProbeError,
    PodProbeSpec,
    build_batch_manifest,
    run_batch_probe,
)
from postgres_apps.verification.provider import ConnectivityCheckProvider, VerificationError
from postgres_apps.verification.report import REPORT_SCHEMA
from postgres_apps.verification.statements import Peer


def spec(app: str, **kw: Any) -> PodProbeSpec:
    return PodProbeSpec(
        app=app,
        namespace="apps",
        secret_name=f"{app}-db-credentials",
        image="docker.io/library/postgres:17-alpine",
        peers=(Peer("other", "other"),),
        timeout_seconds=30,
        **kw,
    )


SPECS = [spec("n8n"), spec("paperless"), spec("gitea")]


def report_line(app: str) -> str:
    return json.dumps({"schema": REPORT_SCHEMA, "app": app, "runner": "pod"})


def container(name: str, state: str, reason: str = "", message: str = "") -> SimpleNamespace:
    s = SimpleNamespace(waiting=None, terminated=None, running=None)
    if state == "terminated":
        s.terminated = SimpleNamespace(exit_code=0, reason="Completed")
    elif state == "waiting":
        s.waiting = SimpleNamespace(reason=reason, message=message)
    else:
        s.running = SimpleNamespace()
    return SimpleNamespace(name=name, state=s)


def pod(phase: str, *containers: SimpleNamespace, reason: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        status=SimpleNamespace(
            phase=phase, reason=reason, container_statuses=list(containers), conditions=[]
        )
    )


class ApiError(Exception):
    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"({status})")
        self.status = status
        self.reason = "Reason"
        self.body = json.dumps({"message": message or f"status {status}"})


class FakeCoreV1:
    """Replays `states` (the last repeats); logs per container; records every call."""

    def __init__(
        self,
        states: list[Any],
        logs: Mapping[str, str] | None = None,
        *,
        create_error: BaseException | None = None,
    ) -> None:
        self.states = list(states)
        self.logs = dict(logs or {a.app: report_line(a.app) + "\n" for a in SPECS})
        self.create_error = create_error
        self.calls: list[tuple[str, Any]] = []
        self.created: list[dict[str, Any]] = []

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self.calls.append(("list", kw.get("label_selector")))
        return SimpleNamespace(items=[])

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        self.calls.append(("create", body["metadata"]["name"]))
        if self.create_error:
            raise self.create_error
        self.created.append(body)
        return body

    def read_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> Any:
        self.calls.append(("read", name))
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, BaseException):
            raise state
        return state

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> str:
        self.calls.append(("log", kw.get("container")))
        return self.logs[str(kw.get("container"))]

    def delete_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> None:
        self.calls.append(("delete", name))

    def deleted(self) -> list[str]:
        return [arg for op, arg in self.calls if op == "delete"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def run(api: FakeCoreV1, specs: list[PodProbeSpec] = SPECS) -> dict[str, Any]:
    clock = Clock()
    return run_batch_probe(api, specs, clock=clock, sleep=clock.sleep, suffix="abc123")


NAME = "dbcheck-abc123"


# -- the manifest -------------------------------------------------------------------------------


def test_each_app_has_its_own_container_reading_only_its_own_secret() -> None:
    manifest = build_batch_manifest(SPECS, NAME, "echo probe")
    containers = manifest["spec"]["containers"]
    assert [c["name"] for c in containers] == ["n8n", "paperless", "gitea"]
    for c, s in zip(containers, SPECS, strict=True):
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in c["env"] if "valueFrom" in e}
        assert refs == {var: {"name": s.secret_name, "key": key} for var, key in SECRET_ENV}
        assert {"name": "PROBE_APP", "value": s.app} in c["env"]
        assert c["securityContext"] == pod_module.restricted_container(70)
    # each container its own /tmp; the one shared volume holds the probes' slots (empty
    # directories, `probe.sh`), nothing of any Secret
    mounts = [c["volumeMounts"] for c in containers]
    slots = {"name": "slots", "mountPath": pod_module.SLOTS_DIR}
    assert mounts == [[{"name": f"tmp-{i}", "mountPath": "/tmp"}, slots] for i in range(3)]  # noqa: S108
    volumes = [v["name"] for v in manifest["spec"]["volumes"]]
    assert volumes == ["tmp-0", "tmp-1", "tmp-2", "slots"]
    lanes = [{e["name"]: e.get("value") for e in c["env"]}["PROBE_LANE"] for c in containers]
    assert lanes == ["0", "1", "2"]
    many = build_batch_manifest([spec(f"a{i}") for i in range(6)], NAME, "x")
    lanes = [
        next(e["value"] for e in c["env"] if e["name"] == "PROBE_LANE")
        for c in many["spec"]["containers"]
    ]
    assert lanes == ["0", "1", "2", "3", "0", "1"]
    assert "shareProcessNamespace" not in manifest["spec"]
    assert manifest["spec"]["automountServiceAccountToken"] is False
    # a scratch table per app and run
    tables = {
        next(e["value"] for e in c["env"] if e["name"] == "PROBE_CRUD_TABLE") for c in containers
    }
    assert len(tables) == 3


def test_the_pod_is_labelled_for_each_app_it_checks() -> None:
    labels = build_batch_manifest(SPECS, NAME, "x")["metadata"]["labels"]
    for app in ("n8n", "paperless", "gitea"):
        assert labels[pod_module.APP_LABEL_PREFIX + app] == ""
    pod_obj = SimpleNamespace(metadata=SimpleNamespace(labels=labels))
    assert pod_module.checks_app(pod_obj, "gitea")
    assert not pod_module.checks_app(pod_obj, "grafana")


def test_batch_manifest_is_a_valid_v1pod_for_the_official_client() -> None:
    from kubernetes.client import ApiClient, V1Pod  # noqa: PLC0415

    manifest = build_batch_manifest(SPECS, NAME, pod_module.probe_script())
    assert ApiClient().sanitize_for_serialization(V1Pod.model_validate(manifest)) == manifest  # type: ignore[no-untyped-call]


def test_apps_that_do_not_share_pod_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="share namespace"):
        run(FakeCoreV1([pod("Succeeded")]), [spec("a"), spec("b", run_as_user=1000)])
    with pytest.raises(ValueError, match="twice"):
        run(FakeCoreV1([pod("Succeeded")]), [spec("a"), spec("a")])


# -- the runner ---------------------------------------------------------------------------------


def test_every_app_gets_its_own_report_and_the_pod_is_deleted() -> None:
    done = pod("Succeeded", *(container(s.app, "terminated") for s in SPECS))
    api = FakeCoreV1([done])
    results = run(api)
    assert {app: r["app"] for app, r in results.items()} == {a.app: a.app for a in SPECS}
    assert results["n8n"]["pod"]["container"] == "n8n"
    assert [c for op, c in api.calls if op == "log"] == ["n8n", "paperless", "gitea"]
    assert api.deleted() == [NAME]
    assert len(api.created) == 1


def test_a_missing_secret_fails_that_app_alone() -> None:
    """The kubelet starts containers one by one: the one whose Secret is missing waits with
    CreateContainerConfigError, the others run and report."""
    missing = 'secret "paperless-db-credentials" not found'
    stuck = container("paperless", "waiting", "CreateContainerConfigError", missing)
    api = FakeCoreV1(
        [
            pod("Pending", container("n8n", "running"), stuck, container("gitea", "running")),
            pod("Pending", container("n8n", "terminated"), stuck, container("gitea", "terminated")),
        ]
    )
    results = run(api)
    assert results["n8n"]["app"] == "n8n"
    assert results["gitea"]["app"] == "gitea"
    error = results["paperless"]
    assert isinstance(error, PodProbeError)
    assert error.reason == "CreateContainerConfigError"
    assert error.message == f"probe pod apps/{NAME} container paperless: {missing}"
    assert "Secret is missing" in error.hint
    assert api.deleted() == [NAME]


def test_a_container_without_a_report_fails_alone() -> None:
    done = pod("Failed", *(container(s.app, "terminated") for s in SPECS))
    api = FakeCoreV1(
        [done], {"n8n": report_line("n8n"), "paperless": "psql: not found\n", "gitea": ""}
    )
    results = run(api)
    assert results["n8n"]["app"] == "n8n"
    for app in ("paperless", "gitea"):
        assert isinstance(results[app], PodProbeError)
        assert results[app].reason == "NoReport"
    assert "psql: not found" in results["paperless"].message


def test_a_deleted_pod_fails_every_app_still_running() -> None:
    api = FakeCoreV1(
        [
            pod("Running", container("n8n", "terminated"), container("paperless", "running")),
            ApiError(404),
        ],
    )
    results = run(api, SPECS[:2])
    assert results["n8n"]["app"] == "n8n"  # reported before the pod went
    assert isinstance(results["paperless"], PodProbeError)
    assert results["paperless"].reason == "PodDeleted"
    assert api.deleted() == [NAME]


def test_the_timeout_fails_the_unfinished_apps_and_deletes_the_pod() -> None:
    api = FakeCoreV1(
        [pod("Running", container("n8n", "terminated"), container("paperless", "running"))]
    )
    results = run(api, SPECS[:2])
    assert results["n8n"]["app"] == "n8n"
    late = results["paperless"]
    assert isinstance(late, PodProbeError)
    assert late.reason == "Timeout"
    assert f"probe pod apps/{NAME} did not finish within 30 s" in late.message
    assert api.deleted() == [NAME]


def test_the_pod_deadline_fails_the_unfinished_apps() -> None:
    api = FakeCoreV1([pod("Failed", container("n8n", "terminated"), reason="DeadlineExceeded")])
    results = run(api, SPECS[:1])
    assert isinstance(results["n8n"], PodProbeError)
    assert results["n8n"].reason == "DeadlineExceeded"


def test_a_refused_create_fails_every_app_and_leaves_nothing() -> None:
    api = FakeCoreV1([pod("Pending")], create_error=ApiError(403, "violates PodSecurity"))
    results = run(api)
    assert {r.reason for r in results.values()} == {"PodCreateFailed"}
    assert api.deleted() == []


def test_an_interrupt_still_deletes_the_pod() -> None:
    api = FakeCoreV1([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        run(api)
    assert api.deleted() == [NAME]


# -- NamespaceProbe: batches, results, diff -----------------------------------------------------


def members(n: int, **kw: Any) -> list[dict[str, Any]]:
    return [
        {
            "app_name": f"app-{i:03d}",
            "secret_name": f"app-{i:03d}-db-credentials",
            "host": "postgres-postgresql.data.svc.cluster.local",
            "port": 5432,
            "database": f"app_{i:03d}",
            "username": f"app_{i:03d}",
            "credentials_sha256": "h",
            "sslmode": "prefer",
            "roundtrips": 20,
            "latency_budget_ms": 100.0,
            "allowed_databases": [],
            "peers": [{"database": "x", "role": "x"}],
            **kw,
        }
        for i in range(n)
    ]


def props(n: int = 2, **kw: Any) -> dict[str, Any]:
    return {
        "namespace": "apps",
        "image": "docker.io/library/postgres:17-alpine",
        "image_pull_policy": "IfNotPresent",
        "timeout_seconds": 30,
        "kube_context": None,
        "kubeconfig": None,
        "rerun": "on-change",
        "dry_run": False,
        "members": members(n),
        **kw,
    }


class BatchApi(FakeCoreV1):
    """Every created pod finishes at once with a report per container."""

    def __init__(self) -> None:
        super().__init__([])
        self.by_name: dict[str, list[str]] = {}

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        names = [c["name"] for c in body["spec"]["containers"]]
        self.by_name[body["metadata"]["name"]] = names
        return super().create_namespaced_pod(namespace, body, **kw)

    def read_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> Any:
        return pod("Succeeded", *(container(c, "terminated") for c in self.by_name[name]))

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> str:
        return report_line(str(kw.get("container")))


def test_more_apps_than_a_pod_takes_make_more_pods_and_every_app_a_result() -> None:
    api = BatchApi()
    results = ns_probe.run_probes(props(BATCH_LIMIT + 3), api)
    sizes = sorted(len(c) for c in api.by_name.values())
    assert sizes == [3, BATCH_LIMIT]
    assert sorted(results) == [f"app-{i:03d}" for i in range(BATCH_LIMIT + 3)]
    assert all(r["report"]["app"] == app for app, r in results.items())
    assert sorted(api.deleted()) == sorted(api.by_name)


def test_errors_become_result_entries_the_check_raises_again() -> None:
    error = PodProbeError("PodDeleted", "probe pod apps/dbcheck-abc123 was deleted while it ran")
    entry = ns_probe.error_result(error)
    check = {
        "app_name": "n8n",
        "verification_mode": "pod",
        "password": "pw-0123456789abcdef",
        "latency_budget_ms": 100.0,
        "secret_name": "n8n-db-credentials",
        "probe_report": entry,
    }
    with pytest.raises(VerificationError) as err:
        ConnectivityCheckProvider().create(check)
    text = str(err.value)
    assert text.startswith('app "n8n": the probe pod could not run (PodDeleted): probe pod apps/')
    assert error.hint in text


def test_an_app_missing_from_the_results_fails_its_check() -> None:
    check: dict[str, Any] = {"app_name": "n8n", "verification_mode": "pod", "password": "p" * 20}
    check |= {"latency_budget_ms": 100.0, "probe_report": {}}
    with pytest.raises(VerificationError, match="returned no report for it"):
        ConnectivityCheckProvider().create(check)


def test_failed_apps_are_the_errors_and_the_failing_reports() -> None:
    from tests.unit.test_verification_checks import GOOD  # noqa: PLC0415

    p = props(3)
    results = {
        "app-000": {"report": GOOD},
        "app-001": ns_probe.error_result(PodProbeError("Timeout", "late")),
        "app-002": {"report": {**GOOD, "login": {"ok": False, "error": "refused"}}},
    }
    assert ns_probe.failed_apps(p, results) == ["app-001", "app-002"]


def olds_of(p: dict[str, Any], failed: list[str] | None = None) -> dict[str, Any]:
    outs = ns_probe.outputs(p, {}, 1.0)
    outs["failed"] = failed or []
    return outs


def diff(olds: dict[str, Any], news: dict[str, Any]) -> bool:
    return bool(ns_probe.NamespaceProbeProvider().diff("apps-probe", olds, news).changes)


def test_diff_runs_again_on_what_the_probe_depends_on() -> None:
    base = props(2)
    assert not diff(olds_of(base), props(2))
    assert diff(olds_of(base), props(3))  # an app added
    assert diff(olds_of(base), {**props(2), "members": members(2, credentials_sha256="rot")})
    assert diff(olds_of(base), props(2, image="postgres:18-alpine"))
    assert diff(olds_of(base), props(2, timeout_seconds=60))


def test_diff_ignores_peers_and_member_order() -> None:
    base = props(2)
    shuffled = {**props(2), "members": list(reversed(members(2, peers=[])))}
    assert not diff(olds_of(base), shuffled)


def test_a_failed_app_runs_the_probe_again_on_the_next_up() -> None:
    assert diff(olds_of(props(2), failed=["app-001"]), props(2))


def test_rerun_always_runs_on_up_and_not_in_a_preview() -> None:
    always = props(2, rerun="always")
    assert diff(olds_of(always), always)
    assert not diff(olds_of(always), {**always, "dry_run": True})


def test_a_report_reaches_the_check_as_json_text_with_its_integers_intact() -> None:
    """Pulumi's property values carry every number as a float (the isolation report's `peers`
    count arrived as 1.0 and failed the judgement as malformed, seen on the local cluster):
    the results output is JSON text per app, so the check judges the report as the probe
    printed it."""
    from tests.unit.test_verification_checks import GOOD  # noqa: PLC0415

    entry = ns_probe.encoded({"n8n": {"report": GOOD}})["n8n"]
    assert isinstance(entry, str)
    assert ns_probe.decoded(entry) == {"report": GOOD}
    check = {
        "app_name": "n8n",
        "verification_mode": "pod",
        "password": "pw-0123456789abcdef",
        "latency_budget_ms": 100.0,
        "secret_name": "n8n-db-credentials",
        "probe_report": entry,
    }
    outs = ConnectivityCheckProvider().create(check).outs
    assert outs is not None
    assert "isolation" in outs["checks_passed"], outs["checks"]
