"""`tools/preview_comment.py` on preview digests in the engine's `pulumi preview --json` format.

Fixtures (tests/fixtures/README.md says where they come from):
- preview-add-app.json: app `paperless` added, `n8n`'s connection limit raised, `app-test` unchanged
  (`--show-sames`);
- preview-risky.json: `legacy` loses its PUBLIC revoke, `scratch`'s database is replaced and its
  Secret moves to namespace `data`.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures"
sys.path.insert(0, str(ROOT))

from tools import preview_comment as pc  # noqa: E402


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((FIXTURES / name).read_text())
    return document


def comment(document: dict[str, Any], **kwargs: Any) -> str:
    return pc.render(pc.parse_digest(document), "dev", **kwargs).markdown


def test_add_app_comment_matches_the_recorded_example() -> None:
    # The recorded example is also the one shown in docs/review-flow.md.
    expected = (FIXTURES / "preview-add-app.comment.md").read_text()
    assert comment(load("preview-add-app.json")) == expected


def test_changes_are_grouped_per_app_with_safe_values() -> None:
    text = comment(load("preview-add-app.json"))
    assert "<details><summary><b>n8n</b>: 2 update</summary>" in text
    assert "| `~ update` | postgresql:Role | `n8n-role` | `connectionLimit`: `20` → `30` |" in text
    assert "<details><summary><b>paperless</b>: 7 create</summary>" in text
    assert "| `+ create` | postgresql:Database | `paperless-database` | protected |" in text
    assert "app-test</b>" not in text  # unchanged apps have no section
    assert "**Plan:** 7 to create, 2 to update (20 unchanged)." in text


def test_privilege_matrix_before_and_after() -> None:
    text = comment(load("preview-add-app.json"))
    before = (
        "| role \\ database | `app_test` | `n8n` |\n"
        "|---|---|---|\n"
        "| `app_test` | owner | — |\n"
        "| `n8n` | — | owner |\n"
    )
    after = (
        "| role \\ database | `app_test` | `n8n` | `paperless` |\n"
        "|---|---|---|---|\n"
        "| `app_test` | owner | — | — |\n"
        "| `n8n` | — | owner | — |\n"
        "| `paperless` | — | — | **owner** (new) |\n"
    )
    assert before in text
    assert after in text
    assert text.index("BEFORE") < text.index(before) < text.index("**AFTER**") < text.index(after)
    assert "**Access changes**" not in text


def test_removed_public_revoke_lets_every_role_in() -> None:
    digest = pc.parse_digest(load("preview-risky.json"))
    before, after = pc.before_after(digest)
    assert before.connect("app_test", "legacy") == "—"
    assert after.connect("app_test", "legacy") == "via PUBLIC"
    assert after.connect("legacy", "legacy") == "owner"
    assert pc.access_changes(before, after) == [
        "⚠️ `app_test` GAINS access to `legacy` (via PUBLIC)",
        "⚠️ `scratch` GAINS access to `legacy` (via PUBLIC)",
    ]
    text = pc.render(digest, "dev").markdown
    assert "| `app_test` | owner | **via PUBLIC** (was —) | — |" in text


def test_destructive_database_changes_are_called_out() -> None:
    digest = pc.parse_digest(load("preview-risky.json"))
    report = pc.render(digest, "dev")
    assert report.destructive == [("replace", pc.DATABASE_TYPE, "scratch-database")]
    assert "> - `replace` postgresql:Database `scratch-database`" in report.markdown
    assert (
        "| `+- replace` | postgresql:Database | `scratch-database` | "
        "`lcCollate`: `en_US.UTF-8` → `C` (forces replacement) |" in report.markdown
    )
    assert pc.render(digest, "dev", allowed=["scratch"]).destructive == []


def test_secret_moving_out_of_the_app_namespaces_is_flagged() -> None:
    text = comment(load("preview-risky.json"))
    assert (
        "| `scratch-secret` | `apps/scratch-db-credentials` | **`data/scratch-db-credentials`** "
        "⚠️ not an app namespace (apps) | scratch | `scratch` |" in text
    )
    assert (
        "| `postgres-admin-secret` | `data/postgres-postgresql` | `data/postgres-postgresql` | "
        "admin Secret, read only | — |" in text
    )


def test_secret_and_unlisted_values_are_never_printed() -> None:
    document = load("preview-add-app.json")
    leak = "plain-leak-0123456789"
    for step in document["steps"]:
        if step["urn"].endswith("::n8n-role"):
            # A sensitive value that is NOT marked secret: only its name may appear.
            step["oldState"]["inputs"]["password"] = "old-" + leak
            step["newState"]["inputs"]["password"] = leak
            step["detailedDiff"]["password"] = {"kind": "update", "inputDiff": True}
            step["newState"]["inputs"]["statementTimeout"] = leak
            step["detailedDiff"]["statementTimeout"] = {"kind": "update", "inputDiff": True}
    text = comment(document)
    assert leak not in text
    assert "`password` changes" in text
    assert "`statementTimeout` changes" in text
    assert "hunter2" not in comment(load("preview-risky.json"))  # credentials in diagnostics


def test_preview_values_unknown_are_resolved_through_property_dependencies() -> None:
    # A new app whose database owner and grant target are outputs not known during preview.
    document = load("preview-add-app.json")
    for step in document["steps"]:
        if step["urn"].endswith("::paperless-database"):
            step["newState"]["inputs"]["owner"] = pc.UNKNOWN
        if step["urn"].endswith("::paperless-revoke-public"):
            step["newState"]["inputs"]["database"] = pc.UNKNOWN
            step["newState"]["outputs"]["database"] = pc.UNKNOWN
    _, after = pc.before_after(pc.parse_digest(document))
    assert after.owners["paperless"] == "paperless"
    assert "paperless" in after.public_revoked
    assert after.connect("n8n", "paperless") == "—"


def test_missing_sames_are_reported_as_a_partial_matrix() -> None:
    document = load("preview-add-app.json")
    document["steps"] = [s for s in document["steps"] if s["op"] != "same"]
    text = comment(document)
    assert "Unchanged resources are not in this preview (run it with `--show-sames`)" in text


def test_no_changes() -> None:
    document = load("preview-add-app.json")
    document["steps"] = [dict(s, op="same") for s in document["steps"] if s.get("oldState")]
    document["changeSummary"] = {"same": len(document["steps"])}
    text = comment(document)
    assert "**Plan:** no changes (22 unchanged)." in text
    assert "_No resource changes._" in text


def test_changed_protect_flag_is_shown() -> None:
    document = load("preview-add-app.json")
    step = next(s for s in document["steps"] if s["urn"].endswith("::n8n-database"))
    new = copy.deepcopy(step["newState"])
    new.pop("protect", None)
    step.update(op="update", newState=new, detailedDiff={})
    text = comment(document)
    assert (
        "| `~ update` | postgresql:Database | `n8n-database` | `protect`: `true` → `false` |"
        in (text)
    )


@pytest.mark.parametrize(
    ("document", "error"),
    [
        ({"steps": [{"urn": "x"}]}, "a step without op/urn"),
        ({"steps": "nope"}, "no steps list"),
        ([1, 2], "no steps list"),
    ],
)
def test_malformed_digests_are_rejected(document: Any, error: str) -> None:
    with pytest.raises(pc.DigestError, match=error):
        pc.parse_digest(document)


def run_cli(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.preview_comment", *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_cli_prints_the_comment_and_gates_destructive_changes() -> None:
    risky = str(FIXTURES / "preview-risky.json")
    plain = run_cli(risky, "--stack", "dev")
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("<!-- postgres-apps-preview:dev -->\n")
    gated = run_cli(risky, "--stack", "dev", "--fail-on-destructive")
    assert gated.returncode == 3
    assert gated.stdout == plain.stdout
    assert "destructive database changes: replace scratch-database" in gated.stderr
    allowed = run_cli(risky, "--fail-on-destructive", "--allow", "scratch")
    assert allowed.returncode == 0, allowed.stderr


def test_cli_reads_stdin_and_rejects_non_json() -> None:
    text = (FIXTURES / "preview-add-app.json").read_text()
    from_stdin = run_cli("-", "--stack", "dev", stdin=text)
    assert from_stdin.returncode == 0
    assert from_stdin.stdout == (FIXTURES / "preview-add-app.comment.md").read_text()
    broken = run_cli("-", stdin="error: no stack selected\n")
    assert broken.returncode == 2
    assert broken.stdout == ""
    assert "cannot read -" in broken.stderr


def test_the_documented_example_is_the_real_output() -> None:
    docs = (ROOT / "docs" / "review-flow.md").read_text()
    assert (FIXTURES / "preview-add-app.comment.md").read_text() in docs


def test_values_cannot_break_the_table() -> None:
    assert pc.shown("a|b`c") == "`a\\|b'c`"
    assert pc.shown({"k": "[secret]", "u": pc.UNKNOWN}) == "`{k=[secret], u=?}`"
    assert pc.shown(pc.UNKNOWN) == "_(known after apply)_"
    assert pc.shown(20.0) == "`20`"
    assert pc.shown(["CONNECT", "TEMPORARY"]) == "`[CONNECT, TEMPORARY]`"


def test_real_engine_output_of_a_failed_preview() -> None:
    # Recorded from the real engine (3.274.1): a preview stopped by mandatory policy violations.
    document = load("preview-real-policy-failure.json")
    text = comment(document)
    assert "**Plan:** 3 to create." in text
    assert "- **error**: error: preview failed" in text
    assert "does not carry policy violations" in text
    assert "| `+ create` | postgresql:Role | `evil-role` |  |" in text


# --- real engine output (pulumi 3.274.1, the real program, the local cluster) -------------------


def test_real_preview_of_an_added_app() -> None:
    # rev-alpha and rev-beta deployed, then rev-gamma added and rev-beta's limit raised.
    digest = pc.parse_digest(load("preview-real-add-app.json"))
    report = pc.render(digest, "review", app_namespaces=["pol-review"])
    text = report.markdown
    assert report.destructive == []
    assert "**Plan:** 6 to create, 1 to update (15 unchanged)." in text
    assert (
        "| `~ update` | postgresql:Role | `rev-beta-role` | `connectionLimit`: `20` → `30` |"
        in (text)
    )
    assert "<details><summary><b>rev-gamma</b>: 6 create</summary>" in text
    assert "| `rev_gamma` | — | — | **owner** (new) |" in text
    before, after = pc.before_after(digest)
    assert before.owners == {"rev_alpha": "rev_alpha", "rev_beta": "rev_beta"}
    assert after.public_revoked == {"rev_alpha", "rev_beta", "rev_gamma"}
    assert pc.access_changes(before, after) == []
    # The read admin Secret is located by its id (no outputs during preview).
    assert (
        "| `postgres-admin-secret` | `data/postgres-postgresql` | `data/postgres-postgresql` | "
        "admin Secret, read only | — |" in text
    )


def test_real_preview_with_a_removed_app_and_a_moved_secret() -> None:
    digest = pc.parse_digest(load("preview-real-move-secret.json"))
    report = pc.render(digest, "review", app_namespaces=["pol-review"])
    assert report.destructive == [
        ("delete", pc.DATABASE_TYPE, "rev-beta-database"),
        ("delete", pc.ROLE_TYPE, "rev-beta-role"),
    ]
    assert (
        "| `rev-alpha-secret` | `pol-review/rev-alpha-db-credentials` | "
        "**`pol-other/rev-alpha-db-credentials`** ⚠️ not an app namespace (pol-review) | "
        "rev-alpha | `rev_alpha` |" in report.markdown
    )


def test_a_drop_with_its_copy_says_so() -> None:
    """The removal of a `drop` app plans its `RetirementCopy` (create) before the deletes: the
    caution line of its database says a verified copy is taken first; the role's line does not."""
    document = load("preview-real-move-secret.json")
    urn = (
        "urn:pulumi:review::postgres-apps::postgres-apps:apps:PostgresApps$"
        f"{pc.COPY_TYPE}::rev-beta{pc.COPY_SUFFIX}"
    )
    state = {"urn": urn, "custom": True, "type": pc.COPY_TYPE, "inputs": {}, "outputs": {}}
    document["steps"].append({"op": "create", "urn": urn, "newState": state})
    text = pc.render(pc.parse_digest(document), "review").markdown
    assert (
        "> - `delete` postgresql:Database `rev-beta-database` — a verified copy (`pg_dump`) is "
        "taken first" in text
    )
    assert "> - `delete` postgresql:Role `rev-beta-role`\n" in text
    plain = pc.render(pc.parse_digest(load("preview-real-move-secret.json")), "review").markdown
    assert "verified copy" not in plain


def test_plain_copies_of_secret_data_are_flagged_never_printed() -> None:
    # The local admin Secret was made with `kubectl apply`: its last-applied-configuration
    # annotation (base64 data inside) reaches the preview JSON unmasked. The fixture carries a
    # fake password in its place.
    document = load("preview-real-add-app.json")
    raw = json.dumps(document)
    fake = base64.b64encode(b"fake-admin-password-for-the-fixture").decode()
    assert fake in raw
    digest = pc.parse_digest(document)
    assert pc.plain_copies(digest) == ["data/postgres-postgresql"]
    text = pc.render(digest, "review").markdown
    assert "> [!WARNING]" in text
    assert fake not in text
    assert "last-applied-configuration" in text


# --- the unmanaged report -----------------------------------------------------------------------


def _with_unmanaged(
    diagnostics: list[dict[str, str]], last_up: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The real add-app preview, as the program of this version would have left it: its report
    logged as a diagnostic (the engine's digest: `urn`, `message`, `severity`) and, from the last
    `up`, the `unmanaged` stack output in the Stack's old state."""
    document = copy.deepcopy(load("preview-real-add-app.json"))
    document["diagnostics"] = diagnostics
    if last_up is not None:
        for step in document["steps"]:
            if (step.get("oldState") or {}).get("type") == pc.STACK_TYPE:
                step["oldState"]["outputs"]["unmanaged"] = last_up
    return document


STACK_URN = "urn:pulumi:review::postgres-apps::pulumi:pulumi:Stack::postgres-apps-review"


def test_the_tools_copies_of_the_program_messages_are_the_programs() -> None:
    from postgres_apps import inventory  # noqa: PLC0415

    assert pc.UNMANAGED_OUTPUT == inventory.OUTPUT_NAME
    assert pc.UNMANAGED_WARNING == inventory.WARNING_PREFIX
    assert pc.UNMANAGED_NOT_CHECKED == inventory.NOT_CHECKED_PREFIX
    assert pc.UNMANAGED_NONE == inventory.NONE_MESSAGE
    assert pc.UNMANAGED_RUNBOOK == inventory.RUNBOOK_SECTION
    # the type the program registers (tests/unit/test_program.py sees it under mocks)
    from tests.unit.conftest import COPY_TYPE  # noqa: PLC0415

    assert pc.COPY_TYPE == COPY_TYPE


def test_unmanaged_objects_found_by_the_preview_and_by_the_last_up() -> None:
    from postgres_apps.inventory import Unmanaged, warning_message  # noqa: PLC0415

    found = Unmanaged(checked=True, roles=("app_user",), databases=("app_test_db",))
    message = warning_message(found)
    assert message is not None
    document = _with_unmanaged(
        [{"urn": STACK_URN, "message": message + "\n", "severity": "warning"}],
        {"checked": True, "roles": ["app_user"], "databases": []},
    )
    text = comment(document)
    section = text[text.index("#### Unmanaged on the server") :]
    assert (
        '- **this preview**: ⚠️ roles "app_user"; databases "app_test_db". Adopt them '
        "(`pulumi import`), retire them (pg_dump, DROP), or list them in "
        "postgres-apps:unmanaged.ignoreRoles / postgres-apps:unmanaged.ignoreDatabases. "
        "Runbook: docs/runbooks/postgres-connectivity.md#unmanaged\n"
    ) in section
    assert "- **last `up`**: ⚠️ roles `app_user`; databases none\n" in section
    # shown once, in its own section, not again among the generic diagnostics
    assert "**Diagnostics**" not in text


def test_a_preview_that_could_not_read_the_server_says_not_checked() -> None:
    from postgres_apps.inventory import not_checked_message  # noqa: PLC0415

    reason = "the preview could not read 127.0.0.1:5432: connection refused"
    document = _with_unmanaged(
        [{"urn": STACK_URN, "message": not_checked_message(reason) + "\n", "severity": "info"}],
        {"checked": True, "roles": [], "databases": []},
    )
    text = comment(document)
    assert f"- **this preview**: not checked ({reason})\n" in text
    assert "- **last `up`**: none\n" in text


def test_a_clean_server_and_a_last_up_that_was_not_checked() -> None:
    from postgres_apps.inventory import NONE_MESSAGE  # noqa: PLC0415

    document = _with_unmanaged(
        [{"urn": STACK_URN, "message": NONE_MESSAGE + "\n", "severity": "info"}],
        {"checked": False, "roles": [], "databases": [], "reason": "r"},
    )
    text = comment(document)
    assert "- **this preview**: none\n" in text
    assert "- **last `up`**: not checked (r)\n" in text


def test_no_section_when_the_preview_says_nothing_about_it() -> None:
    text = comment(load("preview-real-add-app.json"))
    assert "Unmanaged on the server" not in text
