"""The GitHub workflows: actionlint (built from its Go module by localenv/actionlint.sh; a build
failure fails this test, it is never skipped) plus structural checks of what the review flow needs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
sys.path.insert(0, str(ROOT))

from policies import postgres_apps_policies as pol  # noqa: E402


@pytest.fixture(scope="module")
def actionlint() -> Path:
    result = subprocess.run(
        [str(ROOT / "localenv" / "actionlint.sh")],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, f"actionlint could not be built:\n{result.stderr}"
    path = Path(result.stdout.strip().splitlines()[-1])
    assert path.is_file(), f"actionlint.sh printed {path}, which is not a file"
    return path


def load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return document


def triggers(workflow: dict[Any, Any]) -> dict[str, Any]:
    # YAML 1.1 reads the bare key `on` as the boolean True.
    value: dict[str, Any] = workflow["on"] if "on" in workflow else workflow[True]
    return value


def steps(workflow: dict[str, Any], job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = workflow["jobs"][job]["steps"]
    return result


def index_of(steps_: list[dict[str, Any]], predicate: Any, what: str) -> int:
    for i, step in enumerate(steps_):
        if predicate(step):
            return i
    raise AssertionError(f"no step {what}")


def uses(action: str) -> Any:
    return lambda step: str(step.get("uses", "")).startswith(action + "@")


def runs(text: str) -> Any:
    return lambda step: text in str(step.get("run", ""))


def all_runs(workflow: dict[str, Any]) -> str:
    """Every `run:` script of every job, one after the other."""
    return "\n".join(
        str(step.get("run", "")) for job in workflow["jobs"] for step in steps(workflow, job)
    )


def all_uses(workflow: dict[str, Any]) -> list[str]:
    return [
        str(step["uses"])
        for job in workflow["jobs"]
        for step in steps(workflow, job)
        if "uses" in step
    ]


def secrets_used(name: str) -> set[str]:
    return set(re.findall(r"secrets\.([A-Za-z0-9_]+)", (WORKFLOWS / name).read_text()))


BASE_PACK = '--policy-pack "$BASE/policies" --policy-pack-config "$BASE/policies/config.json"'
BASE_GATE = '.venv/bin/python "$BASE/tools/preview_comment.py" preview.json'
FORK_GUARD = "github.event.pull_request.head.repo.full_name == github.repository"
PREVIEW_SECRETS = {
    "PREVIEW_KUBECONFIG",
    "PREVIEW_PULUMI_ACCESS_TOKEN",
    "PREVIEW_PULUMI_CONFIG_PASSPHRASE",
}


def test_actionlint_passes_on_every_workflow(actionlint: Path) -> None:
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"preview.yml", "up.yml"}
    result = subprocess.run(
        [str(actionlint), "-no-color", "-oneline", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_catches_a_broken_workflow(actionlint: Path) -> None:
    # The linter is live: an unknown input of pulumi/actions and an undefined matrix key fail.
    broken = (
        "on: pull_request\n"
        "jobs:\n"
        "  preview:\n"
        "    runs-on: ubuntu-latest\n"
        "    steps:\n"
        "      - uses: pulumi/actions@v6\n"
        "        with:\n"
        "          command: preview\n"
        "          stack-name: ${{ matrix.stack }}\n"
        "          policy-packs: policies\n"
    )
    result = subprocess.run(
        [str(actionlint), "-no-color", "-oneline", "-"],
        input=broken,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert 'input "policy-packs" is not defined' in result.stdout
    assert 'property "stack" is not defined' in result.stdout


def test_preview_workflow_shape() -> None:
    workflow = load("preview.yml")
    job = workflow["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev"]
    # The policy pack runs on the interpreter of the virtualenv its requirements went into.
    assert job["env"]["PULUMI_PYTHON_CMD"] == "${{ github.workspace }}/.venv/bin/python"
    s = steps(workflow, "preview")
    checkout = index_of(s, uses("actions/checkout"), "actions/checkout")
    python = index_of(s, uses("actions/setup-python"), "actions/setup-python")
    deps = index_of(s, runs("pip install -r requirements.txt"), "installing requirements.txt")
    policy_deps = index_of(
        s, runs('pip install -r "$BASE/policies/requirements.txt"'), "installing the policy pack"
    )
    cli = index_of(s, runs("sha256sum --check"), "installing the Pulumi CLI")
    kube = index_of(s, runs('"$KUBECONFIG"'), "writing the kubeconfig")
    preview = index_of(s, runs('pulumi preview --stack "$STACK" --diff'), "pulumi preview --diff")
    json_step = index_of(s, runs("--json --show-sames"), "preview --json --show-sames")
    render = index_of(s, runs(f"{BASE_GATE} --stack"), "rendering")
    post = index_of(s, runs("gh pr comment"), "posting the comment")
    gate = index_of(s, runs("--fail-on-destructive"), "the destructive-change gate")
    assert checkout < python <= deps <= policy_deps < preview
    assert cli < kube < preview < json_step < render < post < gate
    # A failing preview must not stop our comment: the last step gives the verdict.
    assert s[preview]["continue-on-error"] is True
    verdict = s[-2]  # only the artifact upload (if: always()) comes after it
    assert uses("actions/upload-artifact")(s[-1])
    assert s[-1]["if"] == "always()"
    assert "exit 1" in verdict["run"]
    assert f"steps.{s[preview]['id']}.outcome == 'failure'" in verdict["if"]
    assert f"steps.{s[json_step]['id']}.outputs.status != '0'" in verdict["if"]
    # preview.json may hold unmasked copies of Secret data: it is never uploaded.
    assert s[-1]["with"]["path"] == "comment.md"
    assert "preview.json" not in str(s[-1])
    assert "allow-database-replace" in s[gate]["if"]


def test_preview_runs_on_pull_request_with_a_fork_guard() -> None:
    # `pull_request` runs with the head's code but no secrets for forks; `pull_request_target`
    # would hand the base's secrets to a fork's code.
    workflow = load("preview.yml")
    assert set(triggers(workflow)) == {"pull_request"}
    assert workflow["jobs"]["preview"]["if"] == FORK_GUARD
    assert "pull_request_target" not in (WORKFLOWS / "preview.yml").read_text()


def test_preview_uses_read_only_credentials_of_a_protected_environment() -> None:
    workflow = load("preview.yml")
    job = workflow["jobs"]["preview"]
    assert job["environment"] == "preview-${{ matrix.stack }}"
    # Only the read-only credentials of that environment; never the deploy ones.
    assert secrets_used("preview.yml") == PREVIEW_SECRETS
    assert job["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PREVIEW_PULUMI_ACCESS_TOKEN }}"
    kube = index_of(steps(workflow, "preview"), runs('"$KUBECONFIG"'), "writing the kubeconfig")
    assert steps(workflow, "preview")[kube]["env"] == {
        "KUBECONFIG_DATA": "${{ secrets.PREVIEW_KUBECONFIG }}"
    }
    # No tunnel to PostgreSQL: a preview does not connect to it.
    assert "port-forward" not in all_runs(workflow)
    # And the deploy job never sees the preview credentials (nor the reverse).
    assert not secrets_used("up.yml") & PREVIEW_SECRETS
    assert load("up.yml")["jobs"]["up"]["environment"] == "${{ matrix.stack }}"


def test_preview_takes_the_pack_its_exemptions_and_the_gate_from_the_base_branch() -> None:
    workflow = load("preview.yml")
    job = workflow["jobs"]["preview"]
    assert job["env"]["BASE"] == "${{ github.workspace }}/base"
    s = steps(workflow, "preview")
    base = [
        step
        for step in s
        if uses("actions/checkout")(step)
        and step.get("with", {}).get("ref") == "${{ github.event.pull_request.base.sha }}"
    ]
    assert len(base) == 1
    assert base[0]["with"]["path"] == "base"
    scripts = all_runs(workflow)
    joined = scripts.replace("\\\n", " ")  # shell line continuations
    previews = [
        line.strip()
        for line in joined.splitlines()
        if line.strip().startswith("pulumi preview --stack")
    ]
    assert len(previews) == 2
    for command in previews:
        assert BASE_PACK in " ".join(command.split()), command
    # A head-branch policies/config.json (an exemption added by the change it exempts) or
    # tools/preview_comment.py is never read: every use of either goes through $BASE.
    for path in ("policies/", "tools/", "preview_comment"):
        for match in re.finditer(re.escape(path), scripts):
            before = scripts[max(0, match.start() - 12) : match.start()]
            assert before.endswith(("$BASE/", "$BASE/tools/")), scripts[match.start() - 40 :][:80]
    assert "-m tools.preview_comment" not in scripts


def test_the_pack_reads_its_exemptions_only_from_the_policy_config() -> None:
    # The pack reads no file and no environment at run time: its exemptions arrive only as the
    # --policy-pack-config the workflow passes (the base branch's, see above).
    source = (ROOT / "policies" / "postgres_apps_policies.py").read_text()
    for reader in ("open(", "read_text", "os.environ", "getenv", "import os", "Path("):
        assert reader not in source, reader


@pytest.mark.parametrize("name", ["preview.yml", "up.yml"])
def test_every_action_is_pinned_by_full_commit_sha(name: str) -> None:
    actions = all_uses(load(name))
    assert actions
    for action in actions:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", action), action


@pytest.mark.parametrize(
    ("name", "job", "granted"),
    [
        ("preview.yml", "preview", {"contents": "read", "pull-requests": "write"}),
        ("up.yml", "up", {"contents": "read"}),
    ],
)
def test_permissions_are_minimal(name: str, job: str, granted: dict[str, str]) -> None:
    workflow = load(name)
    assert workflow["permissions"] == {}
    assert workflow["jobs"][job]["permissions"] == granted
    for step in (step for step in steps(workflow, job) if uses("actions/checkout")(step)):
        assert step["with"]["persist-credentials"] is False


def test_codeowners_cover_the_review_flow() -> None:
    lines = [
        line.split()
        for line in (ROOT / ".github" / "CODEOWNERS").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    owners = {entry[0]: entry[1:] for entry in lines}
    for path in ("/policies/", "/tools/", "/.github/", "/localenv/"):
        assert owners.get(path), f"no code owner for {path}"
        assert all(owner.startswith("@") for owner in owners[path])


def test_up_workflow_shape() -> None:
    workflow = load("up.yml")
    assert triggers(workflow)["push"]["branches"] == ["main"]
    job = workflow["jobs"]["up"]
    assert job["concurrency"] == {
        "group": "pulumi-${{ matrix.stack }}",
        "cancel-in-progress": False,
    }
    assert "${{ secrets.PULUMI_ACCESS_TOKEN }}" in job["env"].values()
    s = steps(workflow, "up")
    deps = index_of(s, runs("pip install -r requirements.txt"), "installing requirements.txt")
    gate = index_of(s, runs("--fail-on-destructive"), "the destructive-change gate")
    up = index_of(s, runs("pulumi up "), "pulumi up")
    assert deps < gate < up
    assert 'pulumi up --stack "$STACK" --yes' in s[up]["run"]
    assert "--policy-pack policies --policy-pack-config policies/config.json" in s[up]["run"]
    # The commit message reaches the shell as data, never as interpolated script.
    assert "${{" not in s[up]["run"]


@pytest.mark.parametrize("name", ["preview.yml", "up.yml"])
def test_pulumi_cli_version_matches_the_local_toolchain(name: str) -> None:
    versions = (ROOT / "localenv" / "versions.env").read_text()
    match = re.search(r"^PULUMI_VERSION=(\S+)$", versions, re.MULTILINE)
    assert match is not None
    workflow = load(name)
    assert {job["env"]["PULUMI_VERSION"] for job in workflow["jobs"].values()} == {match.group(1)}


def test_policy_pack_config_matches_the_pack() -> None:
    config = json.loads((ROOT / "policies" / "config.json").read_text())
    policies = {p.name: p for p in pol.build_policies()}
    for name, entry in config.items():
        assert name in policies, f"config for unknown policy {name}"
        schema = policies[name].config_schema
        allowed = set(schema.properties) if schema is not None else set()
        assert set(entry) - {"enforcementLevel"} <= allowed, (name, entry)
