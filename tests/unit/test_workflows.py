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


def pulumi_command(command: str) -> Any:
    return lambda step: (
        uses("pulumi/actions")(step) and step.get("with", {}).get("command") == (command)
    )


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
    assert "pull_request" in triggers(workflow)
    assert workflow["permissions"]["pull-requests"] == "write"
    job = workflow["jobs"]["preview"]
    assert job["strategy"]["matrix"]["stack"] == ["dev"]
    # The policy pack runs on the interpreter of the virtualenv its requirements went into.
    assert job["env"]["PULUMI_PYTHON_CMD"] == "${{ github.workspace }}/.venv/bin/python"
    for secret in ("PULUMI_ACCESS_TOKEN", "PULUMI_CONFIG_PASSPHRASE"):
        assert job["env"][secret] == "${{ secrets." + secret + " }}"
    s = steps(workflow, "preview")
    checkout = index_of(s, uses("actions/checkout"), "actions/checkout")
    python = index_of(s, uses("actions/setup-python"), "actions/setup-python")
    deps = index_of(s, runs("pip install -r requirements.txt"), "installing requirements.txt")
    policy_deps = index_of(
        s, runs("pip install -r policies/requirements.txt"), "installing the policy pack"
    )
    kube = index_of(s, runs('"$KUBECONFIG"'), "writing the kubeconfig")
    preview = index_of(s, pulumi_command("preview"), "pulumi/actions preview")
    render = index_of(s, runs("python -m tools.preview_comment preview.json"), "rendering")
    post = index_of(s, runs("gh pr comment"), "posting the comment")
    assert checkout < python < deps < preview
    assert policy_deps < preview
    assert kube < preview < render < post
    assert "${{ secrets.KUBECONFIG }}" in str(s[kube].get("env"))
    inputs = s[preview]["with"]
    assert inputs["stack-name"] == "${{ matrix.stack }}"
    assert inputs["comment-on-pr"] is True
    assert inputs["diff"] is True
    assert inputs["policyPacks"] == "policies"
    assert inputs["policyPackConfigs"] == "policies/config.json"
    # A failing preview must not stop our comment: the last step gives the verdict.
    assert s[preview]["continue-on-error"] is True
    verdict = s[-2]  # only the artifact upload (if: always()) comes after it
    assert uses("actions/upload-artifact")(s[-1])
    assert s[-1]["if"] == "always()"
    assert "exit 1" in verdict["run"]
    # preview.json may hold unmasked copies of Secret data: it is never uploaded.
    assert s[-1]["with"]["path"] == "comment.md"
    assert "preview.json" not in str(s[-1])
    assert f"steps.{s[preview]['id']}.outcome == 'failure'" in verdict["if"]
    json_step = index_of(s, runs("--json --show-sames"), "preview --json --show-sames")
    assert "--policy-pack policies" in s[json_step]["run"]
    gate = index_of(s, runs("--fail-on-destructive"), "the destructive-change gate")
    assert "allow-database-replace" in s[gate]["if"]


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
    up = index_of(s, pulumi_command("up"), "pulumi/actions up")
    assert deps < gate < up
    assert s[up]["with"]["stack-name"] == "${{ matrix.stack }}"
    assert s[up]["with"]["policyPacks"] == "policies"


@pytest.mark.parametrize("name", ["preview.yml", "up.yml"])
def test_pulumi_cli_version_matches_the_local_toolchain(name: str) -> None:
    versions = (ROOT / "localenv" / "versions.env").read_text()
    match = re.search(r"^PULUMI_VERSION=(\S+)$", versions, re.MULTILINE)
    assert match is not None
    pins = {
        step["with"]["pulumi-version"]
        for job in load(name)["jobs"]
        for step in steps(load(name), job)
        if uses("pulumi/actions")(step) and "pulumi-version" in step.get("with", {})
    }
    assert pins == {match.group(1)}


def test_policy_pack_config_matches_the_pack() -> None:
    config = json.loads((ROOT / "policies" / "config.json").read_text())
    policies = {p.name: p for p in pol.build_policies()}
    for name, entry in config.items():
        assert name in policies, f"config for unknown policy {name}"
        schema = policies[name].config_schema
        allowed = set(schema.properties) if schema is not None else set()
        assert set(entry) - {"enforcementLevel"} <= allowed, (name, entry)
