"""The policy pack on the real engine: the clean program passes, an unsafe change is blocked.

`pulumi preview --policy-pack policies` runs the pack exactly as the pull-request workflow does.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from policies import postgres_apps_policies as pol
from tests.e2e.harness import REPO, ProjectStack, base_config, new_stack
from tests.unit.test_policies import messages, resource_args

NAMESPACE = "e2e-policy"
APPS: list[dict[str, Any]] = [{"name": "e2e-pol-a"}, {"name": "e2e-pol-b", "profile": "n8n"}]


def pack_config(tmp: Path, **overrides: Any) -> str:
    """The repo's policy config, with this stack's apps namespace and the given overrides."""
    cfg: dict[str, Any] = json.loads((REPO / "policies/config.json").read_text())
    cfg["credentials-secret-placement"]["appNamespaces"] = [NAMESPACE]
    cfg["apps-namespace-pod-security"]["appNamespaces"] = [NAMESPACE]
    for policy, values in overrides.items():
        cfg[policy] = {**cfg.get(policy, {}), **values}
    path = tmp / f"policy-config-{len(list(tmp.glob('policy-config-*')))}.json"
    path.write_text(json.dumps(cfg))
    return str(path)


def stack_config(apps: list[dict[str, Any]]) -> dict[str, Any]:
    cfg = base_config(apps, mode="direct")
    cfg["postgres-apps:appsNamespace"] = NAMESPACE
    cfg["postgres-apps:verification"]["enabled"] = False
    return cfg


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProjectStack, Path]]:
    tmp = tmp_path_factory.mktemp("policy")
    s = new_stack(tmp, "e2e-policy")
    yield s, tmp
    s.stack.workspace.remove_stack(s.name)  # only previews ran: nothing to destroy


def preview_with_pack(s: ProjectStack, config_file: str) -> str:
    lines: list[str] = []
    s.stack.preview(
        policy_packs=[str(REPO / "policies")],
        policy_pack_configs=[config_file],
        on_output=lines.append,
        color="never",
    )
    return "".join(lines)


def test_clean_program_passes_the_pack(stack: tuple[ProjectStack, Path]) -> None:
    s, tmp = stack
    s.write_config(stack_config(APPS))
    out = preview_with_pack(s, pack_config(tmp))
    # the engine's policy summary (pkg/backend/display/progress.go: printPolicies): this pack ran
    # from the local directory and passed
    passed = re.compile(rf"Policies:\s+✅ {re.escape(pol.PACK_NAME)}@v\S* \(local: [^)]*policies\)")
    assert passed.search(out), out[-3000:]
    assert "[mandatory]" not in out and "❌" not in out, out[-3000:]


def test_an_unacknowledged_drop_opt_in_is_blocked(stack: tuple[ProjectStack, Path]) -> None:
    s, tmp = stack
    s.write_config(stack_config([APPS[0], {**APPS[1], "deletion": "drop"}]))
    with pytest.raises(auto.CommandError) as err:
        preview_with_pack(s, pack_config(tmp))
    text = str(err.value)
    # the policy's own message for this database, made by the validator itself
    expected = messages(
        pol.validate_database_protected,
        resource_args(
            pol.DATABASE_TYPE,
            {"name": "e2e_pol_b"},
            name="e2e-pol-b-database",
            config=json.loads(Path(pack_config(tmp)).read_text())["database-protected"],
        ),
    )
    assert expected and expected[0].startswith("database 'e2e_pol_b' is not protected"), expected
    assert "database-protected" in text
    assert expected[0] in text, text[-3000:]


def test_credentials_outside_the_app_namespaces_are_blocked(
    stack: tuple[ProjectStack, Path],
) -> None:
    s, tmp = stack
    s.write_config(stack_config(APPS))
    with pytest.raises(auto.CommandError) as err:
        preview_with_pack(
            s, pack_config(tmp, **{"credentials-secret-placement": {"appNamespaces": ["apps"]}})
        )
    text = str(err.value)
    assert "credentials-secret-placement" in text
    for app in APPS:  # the validator's own message for each app's Secret
        secret = f"{app['name']}-db-credentials"
        expected = messages(
            pol.validate_credentials_secret,
            resource_args(
                pol.SECRET_TYPE,
                {"metadata": {"name": secret, "namespace": NAMESPACE}},
                name=f"{app['name']}-secret",
                config={"appNamespaces": ["apps"]},
            ),
        )
        placement = [m for m in expected if f"but namespace '{NAMESPACE}' is not an app" in m]
        assert len(placement) == 1, expected
        assert placement[0] in text, text[-3000:]


LOCAL_NON_LOOPBACK = "10.250.0.1"


def test_plain_text_admin_connection_over_the_network_is_blocked(
    stack: tuple[ProjectStack, Path],
) -> None:
    # A non-loopback address that stays on this machine: 10.250.0.1 is the local node's host-only
    # bridge (localenv), where nothing listens on the admin port (PostgreSQL's hostPort is bound
    # to 127.0.0.1), so even a stray connection would be refused locally. The stack's own key
    # (allowInsecureAdmin) is set: the program accepts it, and the pack still blocks it until the
    # pack's config exempts the host too (two keys). The exempted preview passing also shows that
    # a preview of these creates opens no connection to the admin endpoint.
    s, tmp = stack
    cfg = stack_config(APPS)
    cfg["postgres-apps:postgres"]["adminHost"] = LOCAL_NON_LOOPBACK
    cfg["postgres-apps:postgres"]["allowInsecureAdmin"] = True
    s.write_config(cfg)
    with pytest.raises(auto.CommandError) as err:
        preview_with_pack(s, pack_config(tmp))
    assert "admin-connection-tls" in str(err.value)
    assert f"{LOCAL_NON_LOOPBACK} with sslmode=disable" in str(err.value)
    exempt = {"admin-connection-tls": {"allowInsecureAdminHosts": [LOCAL_NON_LOOPBACK]}}
    out = preview_with_pack(s, pack_config(tmp, **exempt))
    assert "mandatory" not in out.lower()
