"""`postgres_apps.hosted`: the schema Pulumi's component provider host infers (no engine)."""

from __future__ import annotations

from typing import Any, get_type_hints

from postgres_apps import apps, hosted
from postgres_apps.apps import PostgresAppsArgs


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def test_schema_has_one_component_with_every_args_key() -> None:
    schema = hosted.schema()
    assert schema["name"] == "postgres-apps"
    assert schema["version"] == hosted.package_version()
    assert list(schema["resources"]) == [hosted.RESOURCE_TYPE]
    component = schema["resources"][hosted.RESOURCE_TYPE]
    assert component["isComponent"] is True
    keys = set(get_type_hints(PostgresAppsArgs))
    assert set(component["inputProperties"]) == {_camel(k) for k in keys}


def test_nested_types_keep_their_keys_and_docstrings() -> None:
    types: dict[str, Any] = hosted.schema()["types"]
    for td in (apps.AppArgs, apps.PostgresServerArgs, apps.VerificationArgs, apps.UnmanagedArgs):
        props = types[f"postgres-apps:index:{td.__name__}"]["properties"]
        assert set(props) == {_camel(k) for k in get_type_hints(td)}, td.__name__
        assert all(p.get("description") for p in props.values()), td.__name__


def test_literals_become_strings_and_ints_stay_integers() -> None:
    app = hosted.schema()["types"]["postgres-apps:index:AppArgs"]["properties"]
    assert app["deletion"]["type"] == "string"
    assert app["connectionLimit"]["type"] == "integer"
    inputs = hosted.schema()["resources"][hosted.RESOURCE_TYPE]["inputProperties"]
    assert inputs["apps"]["items"]["$ref"] == "#/types/postgres-apps:index:AppArgs"


def test_outputs_are_the_real_components() -> None:
    outputs = hosted.schema()["resources"][hosted.RESOURCE_TYPE]["properties"]
    assert set(outputs) == {
        "apps",
        "postgres",
        "verificationMode",
        "serverHardening",
        "connectionBudget",
        "managedApps",
        "retirementCopies",
        "unmanaged",
    }


def test_wire_ints_turns_whole_floats_back_into_ints() -> None:
    """The host hands numbers over as floats (its own int conversion is lost in pulumi 3.272.0)."""
    wire = {
        "postgres": {"admin_port": 5432.0, "host": "db"},
        "apps": [{"name": "a", "connection_limit": 5.0}],
        "verification": {"latency_budget_ms": 100.0, "timeout_seconds": 1.5},
    }
    got = hosted._wire_ints(wire, hosted.HostedArgs)
    assert got == {
        "postgres": {"admin_port": 5432, "host": "db"},
        "apps": [{"name": "a", "connection_limit": 5}],
        "verification": {"latency_budget_ms": 100.0, "timeout_seconds": 1.5},
    }
    assert type(got["postgres"]["admin_port"]) is int
    assert type(got["verification"]["latency_budget_ms"]) is float  # a float field stays float
    assert type(got["verification"]["timeout_seconds"]) is float  # not whole: the validator says so


def test_an_input_arg_stays_an_input() -> None:
    """`kubeconfig: pulumi.Input[str]` (a secret) may come from another resource: not plain."""
    kubeconfig = hosted.schema()["resources"][hosted.RESOURCE_TYPE]["inputProperties"]["kubeconfig"]
    assert kubeconfig["type"] == "string"
    assert "plain" not in kubeconfig
