"""The provider inside Pulumi's real dynamic provider host, driven over gRPC like the engine does.

`python -m pulumi.dynamic` is what `pulumi-resource-pulumi-python` runs, with the project
directory as working directory (the engine's plugin pwd). This test starts it the same way, sends
the serialized provider exactly as `pulumi.dynamic.Resource` stores it, and calls Configure,
Check, Diff, Create, Update and Delete against the real PostgreSQL: what a `pulumi up` would do,
minus the engine.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]
import pytest
from google.protobuf import struct_pb2  # type: ignore[import-untyped]
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import proto, rpc
from pulumi.runtime.proto import provider_pb2_grpc

from postgres_apps.verification.provider import OUTPUT_KEYS, ConnectivityCheckProvider
from postgres_apps.verification.report import CHECKS
from postgres_apps.verification.runbook import RUNBOOK

from .helpers import AppPair, check_inputs, secret_uri
from .pg_server import PgServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
URN = "urn:pulumi:it::postgres-apps::pulumi-python:dynamic/verification:ConnectivityCheck::x-check"


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The dynamic provider host process and a gRPC stub to it (always stopped)."""
    log = (tmp_path_factory.mktemp("dynamic-host") / "stderr.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-u", "-m", "pulumi.dynamic"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=log,
        env={"PATH": "/usr/bin:/bin", "PULUMI_PROJECT": "postgres-apps"},
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().decode().strip())
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=30)
        stub = provider_pb2_grpc.ResourceProviderStub(channel)
        stub.Configure(proto.ConfigureRequest(args=struct_pb2.Struct()))
        yield stub
        channel.close()
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()


def to_struct(props: dict[str, Any]) -> struct_pb2.Struct:
    return asyncio.run(rpc.serialize_properties(props, {}))


def from_struct(s: struct_pb2.Struct) -> dict[str, Any]:
    return dict(rpc.deserialize_properties(s))


def props(pg: PgServer, apps: AppPair, **changes: Any) -> dict[str, Any]:
    """Inputs as the engine sends them to a provider that does not accept secrets (plain)."""
    p: dict[str, Any] = {
        "__provider": serialize_provider(ConnectivityCheckProvider()),
        **check_inputs(pg, apps),
    }
    p.update(changes)
    return p


def test_lifecycle_through_the_real_host(host: Any, pg: PgServer, apps: AppPair) -> None:
    news = props(pg, apps)

    checked = host.Check(proto.CheckRequest(urn=URN, olds=to_struct({}), news=to_struct(news)))
    assert list(checked.failures) == []

    created = host.Create(proto.CreateRequest(urn=URN, properties=checked.inputs))
    assert created.id == f"{apps.app.name}-connectivity"
    outs = from_struct(created.properties)
    assert outs["checks_passed"] == [c for c in CHECKS if c != "dns"]
    assert set(OUTPUT_KEYS) <= set(outs)
    assert "password" not in outs
    assert "uri" not in outs
    assert apps.app.password not in str(outs)

    same = host.Diff(
        proto.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=to_struct(news))
    )
    assert same.changes == proto.DiffResponse.DIFF_NONE

    rotated = props(pg, apps, password=secrets.token_urlsafe(32))
    changed = host.Diff(
        proto.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=to_struct(rotated))
    )
    assert changed.changes == proto.DiffResponse.DIFF_SOME
    assert list(changed.replaces) == []

    allowed = props(pg, apps, allowed_databases=["reporting"])
    changed = host.Diff(
        proto.DiffRequest(id=created.id, urn=URN, olds=created.properties, news=to_struct(allowed))
    )
    assert changed.changes == proto.DiffResponse.DIFF_SOME  # the allow-list re-runs the check
    assert outs["allowed_databases"] == []  # an output too: names only

    always = props(pg, apps, rerun="always")
    updated = host.Update(
        proto.UpdateRequest(id=created.id, urn=URN, olds=created.properties, news=to_struct(always))
    )
    assert from_struct(updated.properties)["checks_passed"] == outs["checks_passed"]

    host.Delete(proto.DeleteRequest(id=created.id, urn=URN, properties=updated.properties))


def test_failure_text_reaches_the_engine(host: Any, pg: PgServer, apps: AppPair) -> None:
    wrong = secrets.token_urlsafe(32)
    news = props(pg, apps, password=wrong, uri=secret_uri(pg, apps.app, pg.host, wrong))

    with pytest.raises(grpc.RpcError) as err:
        host.Create(proto.CreateRequest(urn=URN, properties=to_struct(news)))

    details = err.value.details()  # what `pulumi up` prints (the host sends the traceback)
    assert f'app "{apps.app.name}": check "login" failed: ' in details
    assert f"{RUNBOOK}#password-authentication-failed" in details
    assert wrong not in details


def test_check_failures_are_reported_per_property(host: Any, pg: PgServer, apps: AppPair) -> None:
    news = props(pg, apps, verification_mode="sideways")
    checked = host.Check(proto.CheckRequest(urn=URN, olds=to_struct({}), news=to_struct(news)))
    assert [(f.property, f.reason) for f in checked.failures] == [
        ("verification_mode", "must be 'pod' or 'direct'")
    ]
