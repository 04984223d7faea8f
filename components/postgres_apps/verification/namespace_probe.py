"""`NamespaceProbe`: one probe pod checks every app of a namespace; each check judges its part.

Why a resource of its own: the dynamic provider host serves at most four calls at a time
(`pulumi/dynamic/__main__.py`: `grpc.server(futures.ThreadPoolExecutor(max_workers=4))`), so
per-app checks that each run their own pod wait in four lanes, one pod start-up after another
(98.6 s for 50 apps on the local node). A `NamespaceProbe` runs once per namespace, after every
member's Secret, role and database (its `depends_on`), and starts one pod whose one container
probes every app, `pod.BATCH_SLOTS` at a time (`pod.run_batch_probe`; more than `pod.BATCH_LIMIT`
apps make more pods, run at once and sharing those lanes). Its
per-app results are secret outputs; each app's `ConnectivityCheck` takes its own result as an
input (`probe_report`) and judges it as before, so the gate still fails `pulumi up` naming the
app and the check, and one app's broken Secret fails that app alone.

When it runs again: a member added, removed or changed (its Secret's name or credentials hash,
what the Secret says, the probe's settings), the pod settings, `rerun: always` on `up` (never in a
preview), and any member that failed last time (so that a fix outside the stack is proven on the
next `up`). The members' peers are inputs it neither compares nor stores (see
`provider.PEERS_KEY`: the new app's own probe proves isolation both ways).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pulumi
import pulumi.dynamic

from postgres_apps.settings import VerificationSettings
from postgres_apps.verification.direct import now_iso
from postgres_apps.verification.judgement import judge
from postgres_apps.verification.provider import pod_spec, with_asked_keys
from postgres_apps.verification.redaction import Redactor
from postgres_apps.verification.resource import ConnectivityPeer

if TYPE_CHECKING:
    from postgres_apps.verification.pod import PodProbeSpec

MEMBER_KEYS: Final[tuple[str, ...]] = (
    "app_name",
    "secret_name",
    "host",
    "port",
    "database",
    "username",
    "credentials_sha256",
    "sslmode",
    "roundtrips",
    "latency_budget_ms",
    "allowed_databases",
    "connection_keys",
)
"""A member's compared fields: what its Secret says and how its probe runs (no peers)."""

POD_KEYS: Final[tuple[str, ...]] = (
    "namespace",
    "image",
    "image_pull_policy",
    "timeout_seconds",
    "kube_context",
)
"""Pod-wide inputs, compared and stored (`kubeconfig` too, as a secret output)."""

RESULTS: Final = "results"
"""Output: app → `{"report": …}` or `{"error": {reason, message, hint}}` as a JSON text (Pulumi's
property values would turn every integer of the report into a float). A secret output: the
reports are stored encrypted; each app's check redacts its own with its password."""


@dataclass(frozen=True)
class ProbeMember:
    """One app of the namespace, as its `ConnectivityCheck` describes it."""

    app_name: str
    secret_name: pulumi.Input[str]
    host: pulumi.Input[str]
    port: pulumi.Input[int]
    database: pulumi.Input[str]
    username: pulumi.Input[str]
    credentials_sha256: pulumi.Input[str]
    """`provider.credentials_hash` of the password and uri: a rotation re-runs the probe."""
    peers: Sequence[ConnectivityPeer]
    sslmode: str
    roundtrips: int = 20
    connection_keys: Sequence[str] = ()
    """Secret keys marked as connection strings: the probe logs in with each."""


@dataclass
class NamespaceProbeArgs:
    """Every app of one namespace whose gate runs in pod mode, and the pod's settings."""

    namespace: str
    members: Sequence[ProbeMember]
    settings: VerificationSettings
    kube_context: str | None = None
    kubeconfig: pulumi.Input[str] | None = None
    """Secret. As `ConnectivityCheckArgs.kubeconfig` (None → `kubernetes:kubeconfig`)."""


class NamespaceProbe(pulumi.dynamic.Resource, module="verification", name="NamespaceProbe"):
    """Runs the probe pod(s) of a namespace on create/update; never fails for an app's result."""

    results: pulumi.Output[dict[str, Any]]
    """App → JSON text (`RESULTS`); typed loosely so that a state of another shape still loads."""
    failed: pulumi.Output[list[str]]
    run_id: pulumi.Output[str]
    probe_ms: pulumi.Output[float]
    checked_at: pulumi.Output[str]

    def __init__(
        self, name: str, args: NamespaceProbeArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        from postgres_apps.verification.inputs import stack_kubeconfig  # noqa: PLC0415

        kubeconfig = (
            pulumi.Output.secret(args.kubeconfig)
            if args.kubeconfig is not None
            else stack_kubeconfig()
        )
        props: dict[str, Any] = {
            "namespace": args.namespace,
            "image": args.settings.image,
            "image_pull_policy": args.settings.image_pull_policy,
            "timeout_seconds": args.settings.timeout_seconds,
            "kube_context": args.kube_context,
            "kubeconfig": kubeconfig,
            "rerun": args.settings.rerun,
            "dry_run": pulumi.runtime.is_dry_run(),
            "members": [
                {
                    "app_name": m.app_name,
                    "secret_name": m.secret_name,
                    "host": m.host,
                    "port": m.port,
                    "database": m.database,
                    "username": m.username,
                    "credentials_sha256": m.credentials_sha256,
                    "sslmode": m.sslmode,
                    "roundtrips": m.roundtrips,
                    "latency_budget_ms": args.settings.latency_budget_ms,
                    "allowed_databases": sorted(set(args.settings.allowed_databases)),
                    "peers": [{"database": p.database, "role": p.role} for p in m.peers],
                    "connection_keys": list(m.connection_keys),
                }
                for m in args.members
            ],
            RESULTS: None,
            "failed": None,
            "run_id": None,
            "probe_ms": None,
            "checked_at": None,
        }
        secret_outputs = pulumi.ResourceOptions(additional_secret_outputs=[RESULTS, "kubeconfig"])
        opts = pulumi.ResourceOptions.merge(secret_outputs, opts)
        super().__init__(NamespaceProbeProvider(), name, props, opts)


def stored_members(props: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The members as compared and stored: `MEMBER_KEYS` only, sorted by app."""
    members = [{k: m.get(k) for k in MEMBER_KEYS} for m in props.get("members") or []]
    for member in members:  # a state written before connection keys existed: none
        member["connection_keys"] = member["connection_keys"] or []
    return sorted(members, key=lambda m: str(m["app_name"]))


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Inputs that differ (old outputs vs new inputs), and `failed` when the last run failed."""
    changed = [k for k in (*POD_KEYS, "kubeconfig") if olds.get(k) != news.get(k)]
    if stored_members(olds) != stored_members(news):
        changed.append("members")
    if olds.get("failed"):
        changed.append("failed")
    return changed


def pod_specs(props: Mapping[str, Any]) -> list[PodProbeSpec]:
    """A `pod.PodProbeSpec` per member, in the members' order (`provider.pod_spec` of the
    pod-wide inputs with the member's)."""
    return [pod_spec({**props, **m}) for m in props.get("members") or []]


def error_result(exc: Any) -> dict[str, Any]:
    """A `pod.PodProbeError` as a result entry (`provider` turns it back into one)."""
    return {"error": {"reason": exc.reason, "message": exc.message, "hint": exc.hint}}


def run_probes(props: Mapping[str, Any], api: Any | None = None) -> dict[str, Any]:
    """Every member's result: batches of `pod.BATCH_LIMIT` apps, one pod each, all at once."""
    from postgres_apps.verification import pod  # noqa: PLC0415 - kubernetes is heavy

    specs = pod_specs(props)
    if api is None:
        api = pod.core_api(props.get("kube_context") or None, props.get("kubeconfig") or None)
    batches = [specs[i : i + pod.BATCH_LIMIT] for i in range(0, len(specs), pod.BATCH_LIMIT)]
    lanes = max(1, pod.BATCH_SLOTS // max(1, len(batches)))  # the pods share the lanes
    results: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(batches))) as pool:
        for batch in pool.map(lambda b: pod.run_batch_probe(api, b, lanes=lanes), batches):
            for app, result in batch.items():
                is_error = isinstance(result, pod.PodProbeError)
                results[app] = error_result(result) if is_error else {"report": result}
    return results


def encoded(results: Mapping[str, Any]) -> dict[str, str]:
    """The `results` output: each app's entry as JSON text (see `RESULTS`)."""
    return {app: json.dumps(entry, sort_keys=True) for app, entry in results.items()}


def decoded(entry: Any) -> dict[str, Any]:
    """One app's entry of the `results` output, back as a mapping (`{}` when there is none)."""
    if isinstance(entry, str) and entry:
        value = json.loads(entry)
        return value if isinstance(value, dict) else {}
    return dict(entry) if isinstance(entry, Mapping) else {}


def failed_apps(props: Mapping[str, Any], results: Mapping[str, Any]) -> list[str]:
    """Members whose result is an error or whose report the judgement fails."""
    failed = []
    for member in props.get("members") or []:
        app = str(member["app_name"])
        result = results.get(app) or {}
        report = result.get("report")
        budget = float(member.get("latency_budget_ms") or 0)
        if (
            report is None
            or not judge(
                with_asked_keys(report, member), latency_budget_ms=budget, checked_at=""
            ).ok
        ):
            failed.append(app)
    return sorted(failed)


def outputs(props: Mapping[str, Any], results: dict[str, Any], probe_ms: float) -> dict[str, Any]:
    outs: dict[str, Any] = {k: props.get(k) for k in (*POD_KEYS, "kubeconfig", "rerun")}
    outs["members"] = stored_members(props)
    pods = sorted({str(r["report"]["pod"]["name"]) for r in results.values() if "report" in r})
    outs.update(
        results=encoded(results),
        failed=failed_apps(props, results),
        # new on every run: each member's check sees a changed input and judges the new report
        run_id=f"{now_iso()} {','.join(pods) or 'no pod'}",
        probe_ms=round(probe_ms, 1),
        checked_at=now_iso(),
    )
    return outs


def _run(props: Mapping[str, Any]) -> dict[str, Any]:
    started = time.monotonic()
    results = run_probes(props)
    return outputs(props, results, (time.monotonic() - started) * 1000)


_R = TypeVar("_R")


def _at_boundary(props: Mapping[str, Any], call: Callable[[], _R]) -> _R:
    """Nothing of the kubeconfig leaves in an error (the members carry no password)."""
    try:
        return call()
    except Exception as exc:
        names = {str(props.get("namespace") or "")} - {""}
        redact = Redactor.of(None, [props.get("kubeconfig")], names)
        apps = ", ".join(str(m.get("app_name")) for m in props.get("members") or [])
        raise RuntimeError(
            redact.text(
                f'namespace "{props.get("namespace")}": the probe pod for {apps} could not run: '
                f"{type(exc).__name__}: {exc}"
            )
        ) from None


class NamespaceProbeProvider(pulumi.dynamic.ResourceProvider):
    """Pickled into state by reference: no attributes, no captured objects."""

    def diff(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        rerun = _news.get("rerun") == "always" and _news.get("dry_run") is not True
        return pulumi.dynamic.DiffResult(
            changes=bool(changed_keys(_olds, _news)) or rerun,
            replaces=[],
            delete_before_replace=False,
        )

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        outs = _at_boundary(props, lambda: _run(props))
        return pulumi.dynamic.CreateResult(id_=f"{props['namespace']}-probe", outs=outs)

    def update(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return pulumi.dynamic.UpdateResult(outs=_at_boundary(_news, lambda: _run(_news)))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        """Refresh keeps the state (the probe is re-run by `up`, not by refresh)."""
        return pulumi.dynamic.ReadResult(id_=id_, outs=props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        """Delete probe pods an interrupted run left for these members (as a check's delete)."""
        from postgres_apps.verification.provider import sweep_probe_pods  # noqa: PLC0415

        apps = [str(m.get("app_name")) for m in _props.get("members") or []]
        sweep_probe_pods(_props, str(_props["namespace"]), apps)
