"""The check's inputs as one table (`inputs.INPUTS`): derived key lists, an old state diffs as no
change, the kubeconfig input, the preview (dry run) rule, and redaction at the provider boundary.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pulumi
import pulumi.dynamic
import pytest

import postgres_apps.verification.pod as pod_module
import postgres_apps.verification.provider as provider_module
from postgres_apps.settings import VerificationSettings
from postgres_apps.verification import ConnectivityCheck, ConnectivityCheckArgs, ConnectivityPeer
from postgres_apps.verification.inputs import (
    INPUTS,
    PLAIN_KEYS,
    SECRET_KEYS,
    SECRET_OUTPUTS,
    STORED_KEYS,
    CheckInput,
)
from postgres_apps.verification.provider import (
    INPUT_KEYS,
    ConnectivityCheckProvider,
    VerificationError,
    changed_keys,
)
from postgres_apps.verification.redaction import Redactor
from tests.unit.conftest import CHECK_TYPE, ProgramMocks, is_secret, run_under_mocks, unwrap
from tests.unit.test_verification_provider import PASSWORD, old_outputs, props

OLD_0_1_OUTPUTS: dict[str, Any] = {
    "app_name": "n8n",
    "namespace": "apps",
    "secret_name": "n8n-db-credentials",
    "host": "postgres-postgresql.data.svc.cluster.local",
    "port": 5432,
    "database": "n8n",
    "username": "n8n",
    "sslmode": "prefer",
    "direct_host": "127.0.0.1",
    "direct_port": 15432,
    "verification_mode": "direct",
    "image": "docker.io/library/postgres:17-alpine",
    "image_pull_policy": "IfNotPresent",
    "timeout_seconds": 60,
    "latency_budget_ms": 100.0,
    "rerun": "on-change",
    "roundtrips": 20,
    "kube_context": None,
    "allowed_databases": None,
    "credentials_sha256": "4f3d1e6dd6c079522c49d80ba3a630605b8b9cef6202b3d501a786ec5095d263",
    "checks_passed": ["dns", "tcp", "login", "uri", "crud", "privileges", "isolation", "latency"],
    "checks": [],
    "connect_ms": 4.0,
    "roundtrip_p50_ms": 0.3,
    "roundtrip_p95_ms": 0.6,
    "server_version": "17.2",
    "checked_at": "2026-12-01T10:00:00.000000Z",
    "mode": "direct",
}
"""The outputs 0.1.x's provider (`outputs()` at commit 7d40849) stored for
`test_verification_provider.props()`: the keys, their order and the credentials hash as written."""

OLD_0_1_INPUT_KEYS = (
    "app_name",
    "namespace",
    "secret_name",
    "host",
    "port",
    "database",
    "username",
    "sslmode",
    "direct_host",
    "direct_port",
    "verification_mode",
    "image",
    "image_pull_policy",
    "timeout_seconds",
    "latency_budget_ms",
    "rerun",
    "roundtrips",
    "kube_context",
    "allowed_databases",
)
"""0.1.x's hand-kept `INPUT_KEYS`, verbatim."""


def new_props(**changes: Any) -> dict[str, Any]:
    """What the new resource sends for the same app in an `up` (no kubeconfig configured)."""
    return {**props(allowed_databases=[]), "kubeconfig": None, "dry_run": False, **changes}


def diff(olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
    return ConnectivityCheckProvider().diff("n8n-connectivity", olds, news)


# -- one table, derived key lists --------------------------------------------------------------


def test_the_derived_key_lists_are_the_old_hand_kept_ones() -> None:
    # probe_run: new in 0.3 (pod mode's NamespaceProbe); None in direct mode, as absent
    # connection_keys: new in 0.4 (templated Secret keys the gate logs in with)
    assert INPUT_KEYS == PLAIN_KEYS == (*OLD_0_1_INPUT_KEYS, "probe_run", "connection_keys")
    assert {"password", "uri", "connection_strings"} <= SECRET_KEYS
    assert "probe_report" not in SECRET_KEYS  # a result to judge, not a credential to redact
    assert set(STORED_KEYS) - set(OLD_0_1_INPUT_KEYS) == {
        "kubeconfig",
        "probe_run",
        "connection_keys",
    }
    assert SECRET_OUTPUTS == ("kubeconfig",)
    assert len({i.name for i in INPUTS}) == len(INPUTS)


def test_a_secret_can_never_be_a_plain_stored_input() -> None:
    with pytest.raises(ValueError, match="secret input"):
        CheckInput("token", lambda a: a, secret=True)
    with pytest.raises(ValueError, match="hash output"):
        CheckInput("token", lambda a: a, compare="hash", secret=True, stored=False)


def test_an_old_state_diffs_as_no_change() -> None:
    """An existing stack upgrades with no update: 0.1.x outputs vs the new resource's inputs."""
    result = diff(OLD_0_1_OUTPUTS, new_props())
    assert changed_keys(OLD_0_1_OUTPUTS, new_props()) == []
    assert result.changes is False
    assert result.replaces == []
    # … also in a preview, and with a kubeconfig the old state never saw
    assert diff(OLD_0_1_OUTPUTS, new_props(dry_run=True)).changes is False
    assert diff(OLD_0_1_OUTPUTS, new_props(kubeconfig="apiVersion: v1\n")).changes is False
    # a real change still shows
    assert changed_keys(OLD_0_1_OUTPUTS, new_props(password="other")) == ["password"]


def test_new_outputs_keep_the_old_shape_plus_the_kubeconfig() -> None:
    from postgres_apps.verification.judgement import judge  # noqa: PLC0415
    from tests.unit.test_verification_checks import GOOD  # noqa: PLC0415

    verdict = judge(GOOD, latency_budget_ms=100.0, checked_at="2026-12-01T10:00:00.000000Z")
    outs = provider_module.outputs(new_props(), verdict)
    new_keys = {"kubeconfig", "probe_run", "connection_keys"}
    assert [k for k in outs if k not in new_keys] == list(OLD_0_1_OUTPUTS)
    assert outs["probe_run"] is None  # direct mode / a check with its own pod
    assert outs["connection_keys"] is None  # none asked for: as absent (`is_list`)
    assert outs["credentials_sha256"] == OLD_0_1_OUTPUTS["credentials_sha256"]
    assert diff(outs, new_props()).changes is False


# -- the preview claim: rerun=always re-runs on up, shows nothing in a preview ------------------


def test_rerun_always_is_no_change_in_a_preview() -> None:
    olds = old_outputs(props(rerun="always"))
    assert diff(olds, new_props(rerun="always", dry_run=True)).changes is False


def test_rerun_always_reruns_on_up() -> None:
    olds = old_outputs(props(rerun="always"))
    assert diff(olds, new_props(rerun="always", dry_run=False)).changes is True
    # inputs from a program without the dry_run input (0.1.x): re-run, as before
    news = new_props(rerun="always")
    del news["dry_run"]
    assert diff(olds, news).changes is True


def test_a_real_change_shows_in_a_preview_too() -> None:
    olds = old_outputs(props(rerun="always"))
    assert diff(olds, new_props(rerun="always", dry_run=True, port=5433)).changes is True


def args(**changes: Any) -> ConnectivityCheckArgs:
    base: dict[str, Any] = {
        "app_name": "n8n",
        "namespace": "apps",
        "secret_name": "n8n-db-credentials",
        "host": "pg",
        "port": 5432,
        "database": "n8n",
        "username": "n8n",
        "password": PASSWORD,
        "sslmode": "prefer",
        "direct_host": "127.0.0.1",
        "direct_port": 15432,
        "peers": [ConnectivityPeer(database="paperless", role="paperless")],
        "settings": VerificationSettings(mode="pod", rerun="always"),
        "kube_context": "ctx",
    }
    base.update(changes)
    return ConnectivityCheckArgs(**base)


@pytest.mark.parametrize("dry_run", [True, False])
def test_the_resource_sends_whether_it_is_a_preview(dry_run: bool) -> None:
    run = run_under_mocks(
        lambda: ConnectivityCheck("n8n-check", args()), ProgramMocks(), dry_run=dry_run
    )
    assert unwrap(run.monitor.one(CHECK_TYPE, "n8n-check").inputs)["dry_run"] is dry_run


# -- kubeconfig: the cluster of the stack's kubernetes provider ---------------------------------

KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://10.1.2.3:6443"}}]
users: [{name: u, user: {token: kube-token-0123456789}}]
contexts: [{name: ctx, context: {cluster: c, user: u}}]
current-context: ctx
"""


def test_the_stacks_kubeconfig_reaches_the_check_as_a_secret() -> None:
    run = run_under_mocks(
        lambda: ConnectivityCheck("n8n-check", args()),
        ProgramMocks(),
        config={"kubernetes:kubeconfig": KUBECONFIG},
    )
    reg = run.monitor.one(CHECK_TYPE, "n8n-check")
    assert is_secret(reg.inputs["kubeconfig"])
    assert unwrap(reg.inputs)["kubeconfig"] == KUBECONFIG
    assert "kubeconfig" in (reg.additional_secret_outputs or [])


def test_an_explicit_kubeconfig_wins_and_none_is_none() -> None:
    run = run_under_mocks(
        lambda: ConnectivityCheck("n8n-check", args(kubeconfig="/etc/kube/config")),
        ProgramMocks(),
        config={"kubernetes:kubeconfig": KUBECONFIG},
    )
    assert unwrap(run.monitor.one(CHECK_TYPE, "n8n-check").inputs)["kubeconfig"] == (
        "/etc/kube/config"
    )
    run = run_under_mocks(lambda: ConnectivityCheck("n8n-check", args()), ProgramMocks())
    assert unwrap(run.monitor.one(CHECK_TYPE, "n8n-check").inputs).get("kubeconfig") is None


def test_an_unchanged_kubeconfig_is_no_change_a_changed_one_is() -> None:
    olds = old_outputs(props()) | {"kubeconfig": KUBECONFIG}
    assert changed_keys(olds, new_props(kubeconfig=KUBECONFIG)) == []
    assert changed_keys(olds, new_props(kubeconfig=KUBECONFIG + "# other\n")) == ["kubeconfig"]
    assert changed_keys(olds, new_props(kubeconfig=None)) == ["kubeconfig"]
    from pulumi.output import UNKNOWN  # noqa: PLC0415 - a kubeconfig unknown in a preview

    assert changed_keys(olds, new_props(kubeconfig=UNKNOWN)) == ["kubeconfig"]


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, Any]] = []

    def from_dict(self, doc: Any, context: Any = None) -> str:
        self.calls.append(("dict", doc, context))
        return "client"

    def from_file(self, config_file: Any = None, context: Any = None) -> str:
        self.calls.append(("file", config_file, context))
        return "client"


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    from kubernetes import client, config  # noqa: PLC0415

    rec = Recorder()
    monkeypatch.setattr(config, "new_client_from_config_dict", rec.from_dict)
    monkeypatch.setattr(config, "new_client_from_config", rec.from_file)
    monkeypatch.setattr(client, "CoreV1Api", lambda api_client: ("core", api_client))
    return rec


def test_the_pod_runner_loads_the_kubeconfig_contents(recorder: Recorder) -> None:
    assert pod_module.core_api("ctx", KUBECONFIG) == ("core", "client")
    kind, doc, context = recorder.calls[0]
    assert (kind, context) == ("dict", "ctx")
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.1.2.3:6443"


def test_the_pod_runner_loads_a_kubeconfig_path(recorder: Recorder) -> None:
    pod_module.core_api(None, "~/.kube/other")
    kind, path, context = recorder.calls[0]
    assert kind == "file"
    assert path.endswith("/.kube/other")
    assert not path.startswith("~")
    assert context is None


def test_without_a_kubeconfig_the_context_is_used_as_before(recorder: Recorder) -> None:
    pod_module.core_api("ctx")
    assert recorder.calls == [("file", None, "ctx")]


def test_the_provider_hands_the_kubeconfig_to_the_pod_runner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[Any, Any]] = []

    def fake_core_api(ctx: Any, kubeconfig: Any = None) -> Any:
        seen.append((ctx, kubeconfig))
        raise VerificationError("stop here")

    monkeypatch.setattr(pod_module, "core_api", fake_core_api)
    p = new_props(verification_mode="pod", kube_context="ctx", kubeconfig=KUBECONFIG)
    with pytest.raises(VerificationError):
        ConnectivityCheckProvider().create(p)
    with pytest.raises(VerificationError):
        ConnectivityCheckProvider().delete("n8n-connectivity", old_outputs(p) | p)
    assert seen == [("ctx", KUBECONFIG), ("ctx", KUBECONFIG)]


# -- one redactor at the provider boundary ------------------------------------------------------

URI = f"postgresql://n8n:{PASSWORD}@pg:5432/n8n"
LEAKY = f"boom: {PASSWORD} / {URI} / kube-token-0123456789"


def assert_clean(text: str) -> None:
    for secret in (PASSWORD, URI, "kube-token-0123456789", PASSWORD[:10]):
        assert secret not in text
    assert "<redacted>" in text


def leaky(*_a: Any, **_k: Any) -> Any:
    raise RuntimeError(LEAKY)


def secret_props(**changes: Any) -> dict[str, Any]:
    return new_props(uri=URI, kubeconfig=KUBECONFIG, **changes)


@pytest.mark.parametrize("path", ["create", "update", "diff", "read", "delete", "check"])
def test_every_exit_path_is_redacted(monkeypatch: pytest.MonkeyPatch, path: str) -> None:
    provider = ConnectivityCheckProvider()
    p = secret_props(verification_mode="pod")
    monkeypatch.setattr(provider_module, "run_check", leaky)
    monkeypatch.setattr(provider_module, "changed_keys", leaky)
    monkeypatch.setattr(provider_module, "_check", leaky)
    monkeypatch.setattr(pod_module, "core_api", leaky)
    monkeypatch.setattr(pulumi.dynamic, "ReadResult", leaky)
    calls: dict[str, Callable[[], object]] = {
        "create": lambda: provider.create(p),
        "update": lambda: provider.update("id", p, p),
        "diff": lambda: provider.diff("id", p, p),
        "read": lambda: provider.read("id", p),
        "delete": lambda: provider.delete("id", p),
        "check": lambda: provider.check({}, p),
    }
    with pytest.raises(VerificationError) as err:
        calls[path]()
    assert_clean(str(err.value))
    assert err.value.__cause__ is None
    assert err.value.__suppress_context__


def test_outputs_and_check_failures_are_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    from postgres_apps.verification.judgement import judge  # noqa: PLC0415
    from tests.unit.test_verification_checks import GOOD  # noqa: PLC0415

    report = json.loads(json.dumps(GOOD))
    report["login"]["server_version"] = LEAKY
    monkeypatch.setattr(provider_module, "_direct", lambda _p: report)
    monkeypatch.setattr(provider_module, "judge", judge)
    result = ConnectivityCheckProvider().create(secret_props())
    outs = dict(result.outs or {})
    assert outs.pop("kubeconfig") == KUBECONFIG  # the stored secret itself (a secret output)
    assert_clean(json.dumps(outs))

    failures = ConnectivityCheckProvider().check({}, secret_props(rerun=LEAKY)).failures
    assert [f.property for f in failures] == ["rerun"]
    monkeypatch.setattr(
        provider_module,
        "_check",
        lambda news: pulumi.dynamic.CheckResult(
            news, [pulumi.dynamic.CheckFailure("uri", f"bad uri {URI}")]
        ),
    )
    (failure,) = ConnectivityCheckProvider().check({}, secret_props()).failures
    assert_clean(failure.reason)


def test_the_redactor_takes_whole_secrets_and_password_fragments() -> None:
    r = Redactor.of(PASSWORD, [URI, KUBECONFIG], keep={"n8n"})
    assert r.text(f"x {URI} y") == "x <redacted> y"
    assert "kube-token-0123456789" not in r.text("token kube-token-0123456789")
    assert r.text(f"pw {PASSWORD[3:15]}!") == "pw <redacted>!"
    assert r.value({"a": [f"{PASSWORD}"], "n": 1}) == {"a": ["<redacted>"], "n": 1}
    assert r.text('app "n8n"') == 'app "n8n"'


def test_connection_strings_known_or_empty_are_no_change_until_they_change() -> None:
    """An app without connection keys sends `{}` (a known value: no re-run, the hash as before);
    a marked key's value changes the credentials hash; unknown in a preview, it will change."""
    from postgres_apps.verification.judgement import judge  # noqa: PLC0415
    from tests.unit.test_verification_checks import GOOD  # noqa: PLC0415

    verdict = judge(GOOD, latency_budget_ms=100.0, checked_at="2026-12-01T10:00:00.000000Z")
    outs = provider_module.outputs(new_props(connection_strings={}, connection_keys=[]), verdict)
    assert outs["credentials_sha256"] == OLD_0_1_OUTPUTS["credentials_sha256"]
    assert changed_keys(outs, new_props(connection_strings={}, connection_keys=[])) == []
    assert changed_keys(OLD_0_1_OUTPUTS, new_props(connection_strings={})) == []
    marked = new_props(connection_strings={"APP_DSN": "host=x"}, connection_keys=["APP_DSN"])
    assert changed_keys(outs, marked) == ["connection_keys", "password"]

    class Unknown:  # what the engine hands a dynamic provider for a computed value
        pass

    assert changed_keys(outs, new_props(connection_strings=Unknown())) == ["password"]
