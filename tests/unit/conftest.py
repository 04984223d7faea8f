"""Run the real program (`__main__.py`) or a component under Pulumi mocks and record everything.

The stock mock monitor keeps only URN, id and state. `RecordingMonitor` also keeps what the engine
would see in each registration: parent, provider, `protect`, `retainOnDelete`,
`deleteBeforeReplace`, dependencies and the raw inputs with their secret markers, plus every
component's `register_outputs` — so tests can assert resource options and secretness, not just
values.
"""

from __future__ import annotations

import base64
import json
import logging
import runpy
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import mocks, rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.config import set_all_config
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # `components` is imported from the repository root, as Pulumi does
    sys.path.insert(0, str(REPO))
PROJECT = "postgres-apps"
STACK = "unit"
ADMIN_PASSWORD = "admin-pw-from-k8s-Secret"
CHECK_TYPE = "pulumi-python:dynamic/verification:ConnectivityCheck"
COPY_TYPE = "pulumi-python:dynamic/retirement:RetirementCopy"
AWKWARD_PASSWORD = "p@ss:w/rd%?#&=+ \\x"


def is_secret(value: Any) -> bool:
    return rpc.is_rpc_secret(value)


def unwrap(value: Any) -> Any:
    """Remove secret markers at every level."""
    if rpc.is_rpc_secret(value):
        return unwrap(rpc.unwrap_rpc_secret(value))
    if isinstance(value, dict):
        return {k: unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap(v) for v in value]
    return value


def contains_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


@dataclass
class Registration:
    """One resource registration (or read) as the engine would receive it."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    protect: bool | None
    retain_on_delete: bool | None
    delete_before_replace: bool
    dependencies: list[str]
    deleted_with: str
    inputs: dict[str, Any]
    """Inputs with secret markers kept (see `is_secret`/`unwrap`)."""
    aliases: list[str] = field(default_factory=list)
    """The aliases as sent (`Alias` specs printed, or alias URNs)."""
    read_id: str | None = None
    """For reads (`Resource.get`, `StackReference`): the id that was read."""
    additional_secret_outputs: list[str] | None = None

    @property
    def plain(self) -> dict[str, Any]:
        plain: dict[str, Any] = unwrap(self.inputs)
        return plain


class RecordingMonitor(mocks.MockMonitor):
    def __init__(self, program_mocks: mocks.Mocks) -> None:
        super().__init__(program_mocks)
        self.registrations: list[Registration] = []
        self.component_outputs: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.registrations.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=request.custom,
                    parent=request.parent,
                    provider=request.provider,
                    protect=request.protect if request.HasField("protect") else None,
                    retain_on_delete=(
                        request.retainOnDelete if request.HasField("retainOnDelete") else None
                    ),
                    delete_before_replace=request.deleteBeforeReplace,
                    dependencies=list(request.dependencies),
                    deleted_with=request.deletedWith,
                    inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                    aliases=[str(a).strip() for a in request.aliases] + list(request.aliasURNs),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                )
            )
        return response

    def ReadResource(self, request: Any) -> Any:  # noqa: N802
        response = super().ReadResource(request)  # type: ignore[no-untyped-call]
        self.registrations.append(
            Registration(
                urn=response.urn,
                type=request.type,
                name=request.name,
                custom=True,
                parent=request.parent,
                provider=request.provider,
                protect=None,
                retain_on_delete=None,
                delete_before_replace=False,
                dependencies=list(request.dependencies),
                deleted_with="",
                inputs=rpc.deserialize_properties(request.properties, keep_unknowns=True),
                read_id=request.id,
            )
        )
        return response

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802
        self.component_outputs[request.urn] = rpc.deserialize_properties(request.outputs)
        return super().RegisterResourceOutputs(request)  # type: ignore[no-untyped-call]

    # -- queries ------------------------------------------------------------------------------
    def of_type(self, type_: str) -> list[Registration]:
        return [r for r in self.registrations if r.type == type_]

    def one(self, type_: str, name: str) -> Registration:
        found = [r for r in self.registrations if r.type == type_ and r.name == name]
        assert len(found) == 1, f"expected one {type_} named {name}, got {len(found)}"
        return found[0]

    def by_urn(self, urn: str) -> Registration:
        found = [r for r in self.registrations if r.urn == urn]
        assert len(found) == 1, f"no registration with URN {urn}"
        return found[0]

    def upstream(self, urn: str) -> set[str]:
        """Every URN `urn` waits for, directly or through others: the order the engine keeps."""
        deps = {r.urn: r.dependencies for r in self.registrations}
        seen: set[str] = set()
        todo = list(deps[urn])
        while todo:
            dep = todo.pop()
            if dep not in seen:
                seen.add(dep)
                todo.extend(deps.get(dep, []))
        return seen

    @property
    def urns(self) -> set[str]:
        return {r.urn for r in self.registrations}


@dataclass
class ProgramMocks(mocks.Mocks):
    """Resource outputs as a provider would return them (inputs plus computed values)."""

    passwords: Mapping[str, str] = field(default_factory=dict)
    """App name → the password RandomPassword 'generates' (default: a fixed alphanumeric one)."""
    previous_managed_apps: Any = None
    """What the StackReference to this stack returns as `managedApps` (None: first run)."""
    previous_retirement_copies: Any = None
    """… and as `retirementCopies` (None: no copy was ever taken)."""
    admin_secret_data: dict[str, str] | None = field(
        default_factory=lambda: {
            "postgres-password": base64.b64encode(ADMIN_PASSWORD.encode()).decode()
        }
    )

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        if args.typ == "random:index/randomPassword:RandomPassword":
            app = args.name.removesuffix("-password")
            state["result"] = self.passwords.get(
                app, f"Generated{app.replace('-', '')}Pw0123456789"
            )
        elif args.typ == "kubernetes:core/v1:Secret" and args.resource_id:
            state = {
                "metadata": {"name": args.resource_id.split("/")[1]},
                "data": self.admin_secret_data,
            }
        elif args.typ == "pulumi:pulumi:StackReference":
            outputs = {}
            if self.previous_managed_apps is not None:
                outputs["managedApps"] = self.previous_managed_apps
            if self.previous_retirement_copies is not None:
                outputs["retirementCopies"] = self.previous_retirement_copies
            state = {"name": args.resource_id, "outputs": outputs, "secretOutputNames": []}
        elif args.typ == COPY_TYPE:
            state.update(
                file=f"{state['directory']}/{state['database']}-20261202T000000Z.dump",
                size_bytes=4096,
                sha256="ab" * 32,
                toc_entries=7,
                table_data=1,
                taken_at="20261202T000000Z",
                dump_ms=42,
            )
        elif args.typ == CHECK_TYPE:
            state.update(
                checks_passed=["tcp", "login", "crud", "isolation", "latency"],
                connect_ms=3.5,
                roundtrip_p50_ms=0.4,
                roundtrip_p95_ms=0.9,
                server_version="15.8",
                checked_at="2026-11-27T00:00:00Z",
                mode="direct",
            )
        return f"{args.name}-id", state

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise AssertionError(f"unexpected invoke {args.token}")


@dataclass
class Run:
    monitor: RecordingMonitor
    outputs: dict[str, Any] = field(default_factory=dict)
    """Stack outputs, resolved."""
    secret_outputs: set[str] = field(default_factory=set)
    """Names of stack outputs that are secret."""


def _config_values(config: Mapping[str, object]) -> dict[str, str]:
    """Stack config as the language host hands it over: strings, structured values as JSON."""
    values: dict[str, str] = {}
    for key, value in config.items():
        full = key if ":" in key else f"{PROJECT}:{key}"
        values[full] = value if isinstance(value, str) else json.dumps(value)
    return values


def run_under_mocks(
    body: Callable[[], object],
    program_mocks: ProgramMocks,
    config: Mapping[str, object] | None = None,
    secret_keys: list[str] | None = None,
    monitor: RecordingMonitor | None = None,
    *,
    dry_run: bool = False,
) -> Run:
    """Run `body` as a Pulumi program under mocks; return what was registered and exported.

    Exceptions from the program (including from applies) propagate to the caller; pass your own
    `monitor` to inspect what was registered before the failure.

    `secret_keys` (full keys, e.g. `postgres-apps:adminPassword`) are the keys set with
    `pulumi config set --secret`, handed over as the language host does (`set_all_config`, which
    `pulumi.runtime.is_config_secret` answers from); any other key is plain text, like a
    `pulumi config set` without `--secret`. So both cases of a secret key are one argument apart.
    """
    runtime_settings.set_root_resource(None)  # type: ignore[arg-type]
    monitor = monitor or RecordingMonitor(program_mocks)
    mocks.set_mocks(program_mocks, project=PROJECT, stack=STACK, preview=dry_run, monitor=monitor)
    set_all_config(_config_values(config or {}), secret_keys or [])
    run = Run(monitor=monitor)

    async def program() -> None:
        body()
        stack = runtime_settings.get_root_resource()
        for name, value in getattr(stack, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            run.outputs[name] = await out.future()
            if await out.is_secret():
                run.secret_outputs.add(name)

    runtime_settings.SETTINGS.rpc_manager.clear()
    runtime_settings.SETTINGS.outputs.clear()
    _sync_await(run_pulumi_func(program))
    return run


def run_program(
    config: Mapping[str, object],
    program_mocks: ProgramMocks | None = None,
    secret_keys: list[str] | None = None,
    monitor: RecordingMonitor | None = None,
) -> Run:
    """Run the real `__main__.py` with this stack config."""
    program_mocks = program_mocks or ProgramMocks()
    return run_under_mocks(
        lambda: runpy.run_path(str(REPO / "__main__.py"), run_name="__main__"),
        program_mocks,
        config,
        secret_keys,
        monitor or RecordingMonitor(program_mocks),
    )


THREE_APPS: dict[str, object] = {
    "kubernetes:context": "unit-context",
    "postgres": {
        "host": "postgres-postgresql.data.svc.cluster.local",
        "port": 5432,
        "sslmode": "require",
        "adminHost": "127.0.0.1",
        "adminPort": 15432,
        "adminSslmode": "disable",
    },
    "appsNamespace": "apps",
    "apps": [
        {"name": "app-test"},
        {"name": "n8n", "profile": "n8n", "connectionLimit": 10, "extensions": ["pgcrypto"]},
        {
            "name": "paperless",
            "profile": "paperless",
            "namespace": "docs",
            "deletion": "drop",
            "extensions": ["pg_trgm", "unaccent"],
        },
    ],
    "verification": {"mode": "direct", "latencyBudgetMs": 50},
}


@pytest.fixture
def three_apps() -> Iterator[dict[str, object]]:
    yield json.loads(json.dumps(THREE_APPS))


@dataclass
class RecordingPreflight:
    """Stands in for the admin pre-flight (`postgres_apps.admin.run_preflight`): records the
    endpoint, password and connection budget it was given and answers as a PostgreSQL 15 server
    would to a superuser: the default connection settings, and the roles and databases its session
    read for the unmanaged report (`objects`; None: a fresh server's, i.e. only the system names
    and the admin itself, nothing unmanaged). Raises `error` instead when it is set."""

    objects: tuple[Any, ...] | None = None
    error: Exception | None = None
    calls: list[tuple[Any, str]] = field(default_factory=list)
    budgets: list[Any] = field(default_factory=list)

    def __call__(self, endpoint: Any, password: str, budget: Any) -> Any:
        from postgres_apps.inventory import ServerObject  # noqa: PLC0415
        from postgres_apps.preflight import ConnectionSettings, ServerFacts  # noqa: PLC0415

        self.calls.append((endpoint, password))
        self.budgets.append(budget)
        if self.error is not None:
            raise self.error
        fresh = (
            ServerObject("role", "pg_monitor"),
            ServerObject("role", endpoint.user),
            *(ServerObject("database", d) for d in ("postgres", "template0", "template1")),
        )
        return ServerFacts(
            version_num=150000,
            superuser=True,
            connections=ConnectionSettings(100, 3, None),
            objects=fresh if self.objects is None else self.objects,
        )


@pytest.fixture(scope="session", autouse=True)
def harness_preflight() -> Iterator[RecordingPreflight]:
    """No unit test logs in to a real server: the program's admin pre-flight is this recorder,
    for the whole session (module-scoped fixtures run the program too). A test that wants another
    answer replaces `postgres_apps.admin.run_preflight` itself with `monkeypatch`."""
    import postgres_apps.admin  # noqa: PLC0415

    fake = RecordingPreflight()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postgres_apps.admin, "run_preflight", fake)
        yield fake


@dataclass
class RecordingSurvey:
    """Stands in for the preview's inventory read (`postgres_apps.admin.survey`): records the calls
    and answers "not checked", as a pull-request runner without the admin endpoint would."""

    calls: list[tuple[Any, str, Any]] = field(default_factory=list)

    def __call__(self, endpoint: Any, password: str, scope: Any) -> Any:
        from postgres_apps.inventory import Unmanaged  # noqa: PLC0415

        self.calls.append((endpoint, password, scope))
        return Unmanaged(checked=False, reason="the unit harness does not connect")


@pytest.fixture(scope="session", autouse=True)
def harness_survey() -> Iterator[RecordingSurvey]:
    """No unit preview connects to a server either: the preview's inventory read is this
    recorder for the whole session."""
    import postgres_apps.admin  # noqa: PLC0415

    fake = RecordingSurvey()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postgres_apps.admin, "survey", fake)
        yield fake


@dataclass
class FakeNamespaces:
    """Stands in for the cluster's namespaces (`postgres_apps.namespace.live_namespace_labels`):
    `live` maps the namespaces that exist to their labels (none by default); the calls are
    recorded."""

    live: dict[str, dict[str, str]] = field(default_factory=dict)
    calls: list[tuple[list[str], Any, Any]] = field(default_factory=list)
    real: Any = None
    """The function this fake stands in for (tests of the reader itself call it)."""

    def __call__(self, names: Any, kube_context: Any, kubeconfig: Any) -> dict[str, Any]:
        self.calls.append((list(names), kube_context, kubeconfig))
        return {n: dict(self.live[n]) for n in names if n in self.live}


@pytest.fixture(scope="session", autouse=True)
def harness_namespaces() -> Iterator[FakeNamespaces]:
    """No unit test asks a cluster which namespaces exist: this fake answers for the session."""
    import postgres_apps.namespace  # noqa: PLC0415

    fake = FakeNamespaces(real=postgres_apps.namespace.live_namespace_labels)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(postgres_apps.namespace, "live_namespace_labels", fake)
        yield fake


class _ExpectedPreflightFailure(logging.Filter):
    """Tests that make the admin pre-flight fail leave the SDK's futures holding that error
    unretrieved; asyncio would print each one as "Future exception was never retrieved" at exit,
    which reads like a failure in the test log. Only that error is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        from postgres_apps.preflight import AdminPreflightError  # noqa: PLC0415

        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, AdminPreflightError)


logging.getLogger("asyncio").addFilter(_ExpectedPreflightFailure())
