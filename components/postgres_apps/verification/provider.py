"""Dynamic provider for `ConnectivityCheck`.

Serialization: Pulumi pickles the provider object with dill into the state and unpickles it in the
dynamic provider host (`python -m pulumi.dynamic`, started by the engine with the project
directory as its working directory, so `sys.path[0]` is the project root). dill pickles classes
of importable modules *by reference*: the state holds "postgres_apps.verification.provider.
ConnectivityCheckProvider", not code, and the host imports this module. Hence: the provider object
has no attributes, heavy clients (psycopg, kubernetes) are imported inside the runners, and no
config is read here (everything arrives as inputs).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

import pulumi.dynamic

from postgres_apps.verification import inputs
from postgres_apps.verification.direct import now_iso
from postgres_apps.verification.inputs import (
    ABSENT_IS_UNCHANGED,
    COMPARED_KEYS,
    CREDENTIALS_HASH,
    HASHED,
    LIST_KEYS,
    PLAIN_KEYS,
    RESULT_KEYS,
    SECRET_OUTPUTS,
    STORED_KEYS,
)
from postgres_apps.verification.judgement import judge
from postgres_apps.verification.redaction import Redactor
from postgres_apps.verification.report import Verdict
from postgres_apps.verification.runbook import RUNBOOK
from postgres_apps.verification.statements import Peer

if TYPE_CHECKING:
    from postgres_apps.verification.pod import PodProbeSpec

INPUT_KEYS: Final[tuple[str, ...]] = PLAIN_KEYS
"""Plain inputs: copied into the outputs and compared by `diff` (`allowed_databases`: a sorted
list of names; missing — a state written before it existed — is the empty list). Derived from
`inputs.INPUTS`, like every key list here."""

LIST_INPUT_KEYS: Final = LIST_KEYS
"""Inputs that are lists: a missing value compares equal to `[]`."""

PEERS_KEY: Final = "peers"
"""The other managed apps (`[{database, role}]`): an input the probe uses, but deliberately
neither compared by `diff` nor copied into the outputs.

Why `diff` ignores it: adding (or removing) an app changes every check's peers. Re-running every
check for that would be O(n) probes per added app and prove nothing new: the isolation check is
symmetric — the NEW app's own check proves both directions against every existing app (none of
their databases reachable from it, none of their roles may connect to its database, PUBLIC may
not, one login refused). A removed app leaves nothing to be isolated from. Checks re-run on their
own inputs (credentials, endpoint, mode, …), and on every `up` with `rerun: always`.

Why it is not an output: when `diff` reports no change the engine keeps the old outputs but
records the NEW inputs (`SameStep`: `new.Outputs = old.Outputs`), so the state's inputs always
hold the current peers while a copy in the outputs would go stale."""

DRY_RUN_KEY: Final = "dry_run"
"""True when the program runs for a preview (`pulumi.runtime.is_dry_run()`). Never compared:
it differs between a preview and an up by design. With `rerun: always`, `diff` reports the
re-run only when it is false, so `pulumi preview` shows an existing check as unchanged and
`pulumi up` still re-runs it."""

PROBE_REPORT_KEY: Final = "probe_report"
"""Pod mode with a `NamespaceProbe`: this app's result of the namespace's probe run (JSON text
of `{"report": …}` or `{"error": …}`: `namespace_probe.RESULTS`), judged here instead of running
a pod of its own. Neither compared nor stored: `probe_run` (the run's id) is, so a new run
re-judges and an old one does not."""

OUTPUT_KEYS: Final[tuple[str, ...]] = RESULT_KEYS

SECRET_KEYS: Final = inputs.SECRET_KEYS
"""Secret inputs: password and uri are never stored, `diff` compares their hash
(`inputs.HASHED`); the kubeconfig is stored as a secret output (`inputs.SECRET_OUTPUTS`)."""


DELETE_UNREACHABLE_ENV: Final = "PULUMI_K8S_DELETE_UNREACHABLE"
"""pulumi-kubernetes' own switch (`kubeProvider.Delete`, provider/pkg/provider/provider.go): when
it is "true", a delete on an unreachable cluster succeeds (the resource leaves the state). The
check's pod-mode delete honours it, so one setting lets a destroy of a gone cluster finish."""


class VerificationError(Exception):
    """`pulumi up` fails with this text: app, check, what was seen, hint."""


def is_known_secret(value: Any) -> bool:
    """A secret input's value as the engine hands it over: a string, None, or (connection
    strings) a mapping of strings; anything else is an unknown of a preview."""
    if isinstance(value, Mapping):
        return all(isinstance(v, str) for v in value.values())
    return isinstance(value, str | None)


def credentials_hash(
    app: str, password: str, uri: str | None, connection_strings: Mapping[str, Any] | None = None
) -> str:
    """What `diff` compares instead of the password (uri, connection strings); the secrets are
    never stored. Without connection strings the hash is what it was before they existed."""
    extra = [f"{k}={v}" for k, v in sorted((connection_strings or {}).items())]
    return _sha256("postgres-apps/verification", app, password, uri or "", *extra)


def _sha256(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def secret_hashes(props: Mapping[str, Any]) -> dict[str, str | None]:
    """Every hash output (`inputs.HASHED`) for these inputs."""
    app = str(props.get("app_name"))
    hashes: dict[str, str | None] = {
        CREDENTIALS_HASH: credentials_hash(
            app, str(props["password"]), props.get("uri"), connection_strings_of(props)
        ),
    }
    if hashes.keys() != HASHED.keys():
        raise RuntimeError("secret_hashes and inputs.HASHED disagree")
    return hashes


def first_of_hash(key: str) -> str:
    """The input a change is reported under: a hash's first (`password` for password and uri),
    else the input itself (`kubeconfig`)."""
    return next((names[0] for names in HASHED.values() if key in names), key)


def redactor(props: Mapping[str, Any]) -> Redactor:
    """The provider boundary's redactor for these inputs: every secret input, by name."""
    others = [props.get(k) for k in sorted(SECRET_KEYS - {"password", "connection_strings"})]
    others += list(connection_strings_of(props).values())
    return Redactor.of(props.get("password"), others, safe_names(props))


def safe_names(props: Mapping[str, Any]) -> set[str]:
    """Names the messages quote on purpose: never mistaken for password fragments."""
    names = {str(props.get(k) or "") for k in ("app_name", "username", "database", "host")}
    names |= {str(props.get(k) or "") for k in ("namespace", "secret_name", "direct_host")}
    for entry in props.get(PEERS_KEY) or []:  # as given: `check` reports malformed ones
        if isinstance(entry, Mapping):
            names |= {str(entry.get("database") or ""), str(entry.get("role") or "")}
    names |= set(allowed_of(props))
    return names - {""}


def allowed_of(props: Mapping[str, Any]) -> list[str]:
    """The `allowed_databases` input as names (checked to be a list of names by `check`)."""
    return [str(d) for d in props.get("allowed_databases") or []]


def peers_of(props: Mapping[str, Any]) -> list[Peer]:
    """The `peers` input (a list of {database, role}) as plain values; malformed entries fail."""
    peers: list[Peer] = []
    for entry in props.get(PEERS_KEY) or []:
        if not isinstance(entry, Mapping) or not entry.get("database") or not entry.get("role"):
            raise VerificationError(
                f'app "{props.get("app_name")}": malformed peers entry {entry!r} '
                "(expected {database, role})"
            )
        peers.append(Peer(database=str(entry["database"]), role=str(entry["role"])))
    return peers


def run_check(props: Mapping[str, Any]) -> Verdict:
    """Run the probe with the runner the inputs ask for and judge its report."""
    from postgres_apps.verification.pod import PodProbeError  # noqa: PLC0415

    app = str(props["app_name"])
    mode = props.get("verification_mode", "pod")
    try:
        if mode == "direct":
            report = _direct(props)
        elif mode == "pod":
            report = _pod(props)
        else:
            raise VerificationError(f'app "{app}": unknown verification mode {mode!r}')
    except PodProbeError as exc:
        link = f"{RUNBOOK}#probe-pod"
        hint = f"{exc.hint}, or see {link}" if exc.hint else f"see {link}"
        raise VerificationError(
            f'app "{app}": the probe pod could not run ({exc.reason}): {exc.message} — {hint}'
        ) from None
    report = redactor(props).value(with_asked_keys(report, props))
    # Microseconds (the report's clock): a re-run always has a newer `checked_at`.
    return judge(report, latency_budget_ms=float(props["latency_budget_ms"]), checked_at=now_iso())


def connection_strings_of(props: Mapping[str, Any]) -> Mapping[str, Any]:
    """The `connection_strings` input as a mapping; none while it is unknown (a preview)."""
    given = props.get("connection_strings")
    return given if isinstance(given, Mapping) else {}


def connection_keys_of(props: Mapping[str, Any]) -> list[str]:
    """The `connection_keys` input (a check's or a namespace probe member's) as names."""
    return [str(k) for k in props.get("connection_keys") or []]


def with_asked_keys(report: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """The report with the connection keys the inputs ask for in its `target`: the judgement
    holds the report to them, so a key the probe left out fails (`judge_connection_keys`)."""
    target = report.get("target")
    target = dict(target) if isinstance(target, Mapping) else {}
    return {**report, "target": {**target, "connection_keys": connection_keys_of(props)}}


def _direct(props: Mapping[str, Any]) -> dict[str, Any]:
    from postgres_apps.verification.direct import DirectTarget, run_direct_probe  # noqa: PLC0415

    strings = connection_strings_of(props)
    uri = props.get("uri")
    if not uri:
        from postgres_apps.credentials import postgres_uri  # noqa: PLC0415 - the Secret's format

        uri = postgres_uri(
            host=str(props["host"]),
            port=int(props["port"]),
            dbname=str(props["database"]),
            user=str(props["username"]),
            password=str(props["password"]),
            sslmode=str(props["sslmode"]),
        )
    return run_direct_probe(
        DirectTarget(
            app=str(props["app_name"]),
            host=str(props["direct_host"]),
            port=int(props["direct_port"]),
            database=str(props["database"]),
            user=str(props["username"]),
            password=str(props["password"]),
            sslmode=str(props["sslmode"]),
            uri=str(uri),
            secret_host=str(props["host"]),
            secret_port=int(props["port"]),
            peers=peers_of(props),
            allowed_databases=allowed_of(props),
            connect_timeout_s=max(2, min(10, int(props["timeout_seconds"]))),
            roundtrips=int(props.get("roundtrips") or 20),
            connection_strings={
                key: str(strings[key]) for key in connection_keys_of(props) if key in strings
            },
        )
    )


def _pod(props: Mapping[str, Any]) -> dict[str, Any]:
    """The app's part of its namespace's probe run (`PROBE_REPORT_KEY`), else its own pod."""
    from postgres_apps.verification.namespace_probe import decoded  # noqa: PLC0415
    from postgres_apps.verification.pod import (  # noqa: PLC0415
        PodProbeError,
        core_api,
        run_pod_probe,
    )

    given = None if props.get(PROBE_REPORT_KEY) is None else decoded(props[PROBE_REPORT_KEY])
    if given is not None:
        error = given.get("error")
        if isinstance(error, Mapping):
            raise PodProbeError(
                str(error.get("reason")), str(error.get("message")), str(error.get("hint") or "")
            )
        report = given.get("report")
        if not isinstance(report, Mapping):
            raise VerificationError(
                f'app "{props.get("app_name")}": its namespace probe returned no report for it'
            )
        return dict(report)
    api = core_api(props.get("kube_context") or None, props.get("kubeconfig") or None)
    return run_pod_probe(api, pod_spec(props))


def pod_spec(props: Mapping[str, Any]) -> PodProbeSpec:
    """One app's probe in a pod, from its check's inputs (or a `NamespaceProbe`'s pod-wide
    inputs merged with one member's: the same keys)."""
    from postgres_apps.verification.pod import PodProbeSpec  # noqa: PLC0415

    return PodProbeSpec(
        app=str(props["app_name"]),
        namespace=str(props["namespace"]),
        secret_name=str(props["secret_name"]),
        image=str(props["image"]),
        image_pull_policy=str(props["image_pull_policy"]),
        sslmode=str(props["sslmode"]),
        peers=peers_of(props),
        allowed_databases=allowed_of(props),
        timeout_seconds=int(props["timeout_seconds"]),
        roundtrips=int(props.get("roundtrips") or 20),
        connection_keys=connection_keys_of(props),
    )


def outputs(props: Mapping[str, Any], verdict: Verdict) -> dict[str, Any]:
    """Inputs minus secrets, the credentials hash, and the results. Nothing secret."""
    outs: dict[str, Any] = {k: props.get(k) for k in STORED_KEYS}
    outs.update(secret_hashes(props))
    outs.update(
        checks_passed=verdict.passed,
        checks=[c.to_json() for c in verdict.checks],
        connect_ms=verdict.connect_ms,
        roundtrip_p50_ms=verdict.roundtrip_p50_ms,
        roundtrip_p95_ms=verdict.roundtrip_p95_ms,
        server_version=verdict.server_version,
        checked_at=verdict.checked_at,
        mode=verdict.runner,
    )
    return outs


def _probe(props: Mapping[str, Any]) -> dict[str, Any]:
    verdict = run_check(props)
    if not verdict.ok:
        raise VerificationError(verdict.error_message(str(props.get("secret_name"))))
    return outputs(props, verdict)


def _plain(key: str, value: Any) -> Any:
    return (value or []) if key in LIST_INPUT_KEYS else value


def changed_keys(olds: Mapping[str, Any], news: Mapping[str, Any]) -> list[str]:
    """Inputs that differ (old outputs vs new inputs); `password` when the credentials hash
    differs (password or uri).

    `peers` and `dry_run` are never among them (see `PEERS_KEY`, `DRY_RUN_KEY`). `kubeconfig`
    absent from the old outputs (a state written before it existed) is no change: which cluster
    a 0.1.x check ran in is unknown, and re-running every check for that would prove nothing."""
    changed = [
        k
        for k in COMPARED_KEYS
        if not (k in ABSENT_IS_UNCHANGED and k not in olds)
        and _plain(k, olds.get(k)) != _plain(k, news.get(k))
    ]
    unknown = [k for k in SECRET_KEYS if not is_known_secret(news.get(k))]
    if not isinstance(news.get("password"), str):
        unknown.append("password")
    if unknown:
        # Unknown in a preview (e.g. a rotation's new RandomPassword): it will change. Reported
        # under the first input of its hash (`password` for the credentials).
        return changed + sorted({first_of_hash(k) for k in unknown} - set(changed))
    for out, new_hash in secret_hashes(news).items():
        if olds.get(out) != new_hash:
            changed.append(HASHED[out][0])
    return changed


class ConnectivityCheckProvider(pulumi.dynamic.ResourceProvider):
    """Pickled into state by reference: no attributes, no captured objects."""

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        return _at_boundary(news, lambda: _check(news))

    def diff(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.DiffResult:
        return _at_boundary(_news, lambda: _diff(_olds, _news))

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        def run() -> pulumi.dynamic.CreateResult:
            outs = _probe(props)
            return pulumi.dynamic.CreateResult(id_=f"{props['app_name']}-connectivity", outs=outs)

        return _at_boundary(props, run)

    def update(
        self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]
    ) -> pulumi.dynamic.UpdateResult:
        return _at_boundary(_news, lambda: pulumi.dynamic.UpdateResult(outs=_probe(_news)))

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        """Refresh keeps the state as it is (the check is re-run by `up`, not by refresh)."""
        return _at_boundary(props, lambda: pulumi.dynamic.ReadResult(id_=id_, outs=props))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        _at_boundary(_props, lambda: _delete(_props))


_R = TypeVar("_R")


def _at_boundary(props: Mapping[str, Any], call: Callable[[], _R]) -> _R:
    """The one redaction point: whatever the provider returns or raises leaves through the
    redactor of these inputs (`redactor`). An exception becomes a `VerificationError` with the
    redacted text and no chained cause: the dynamic provider host sends the whole traceback
    (`traceback.format_exc()`) to the engine, chained exceptions included."""
    try:
        result = call()
    except Exception as exc:
        text = str(exc) if isinstance(exc, VerificationError) else f"{type(exc).__name__}: {exc}"
        raise VerificationError(redactor(props).text(text)) from None
    return _redact_result(redactor(props), result)


def _redact_result(r: Redactor, result: _R) -> _R:
    """Every string redacted, except the stored secrets' own values (secret outputs, encrypted
    in the state: `inputs.SECRET_OUTPUTS`) and the hashes (one-way; a fragment match against
    the password would corrupt them into a diff on every run)."""
    results = pulumi.dynamic.CreateResult | pulumi.dynamic.UpdateResult | pulumi.dynamic.ReadResult
    if isinstance(result, results) and result.outs is not None:
        kept = {*SECRET_OUTPUTS, *HASHED}
        result.outs = {k: v if k in kept else r.value(v) for k, v in result.outs.items()}
    elif isinstance(result, pulumi.dynamic.CheckResult):
        result.failures = [
            pulumi.dynamic.CheckFailure(f.property, r.text(f.reason)) for f in result.failures
        ]
    return result


def _diff(olds: Mapping[str, Any], news: Mapping[str, Any]) -> pulumi.dynamic.DiffResult:
    changed = changed_keys(olds, news)
    # `rerun: always` re-runs on `up`, not in a preview (see DRY_RUN_KEY).
    rerun = news.get("rerun") == "always" and news.get(DRY_RUN_KEY) is not True
    return pulumi.dynamic.DiffResult(
        changes=bool(changed) or rerun,
        replaces=[],
        delete_before_replace=False,
    )


def _delete(_props: Mapping[str, Any]) -> None:
    """Direct mode leaves nothing behind; pod mode: delete probe pods of an interrupted run."""
    if _props.get("verification_mode") != "pod":
        return
    sweep_probe_pods(_props, str(_props["namespace"]), [str(_props["app_name"])])


def sweep_probe_pods(props: Mapping[str, Any], namespace: str, apps: list[str]) -> None:
    """Delete the probe pods that check these apps in the cluster of `props` (kube_context,
    kubeconfig). A pod already gone is fine (`delete_pod` ignores 404). Anything else fails the
    delete with what went wrong; an unreachable cluster only passes with
    `DELETE_UNREACHABLE_ENV`."""
    from postgres_apps.verification import pod  # noqa: PLC0415 - kubernetes is heavy

    try:
        api = pod.core_api(props.get("kube_context") or None, props.get("kubeconfig") or None)
        pod.delete_probe_pods(api, namespace, apps)
    except Exception as exc:
        unreachable = pod.cluster_unreachable(exc)
        if unreachable and os.environ.get(DELETE_UNREACHABLE_ENV) == "true":
            return
        hint = ""
        if unreachable:
            hint = (
                f" — reach the cluster, or if it is gone for good re-run with "
                f"{DELETE_UNREACHABLE_ENV}=true (the kubernetes provider's switch for it)"
            )
        elif getattr(exc, "status", None) in (401, 403):
            hint = " — Pulumi's identity needs list and delete on pods in that namespace"
        who = f'app "{apps[0]}"' if len(apps) == 1 else f"apps {', '.join(apps)}"
        raise VerificationError(
            f'{who}: cannot delete leftover probe pods in namespace "{namespace}": '
            f"{pod.api_error_text(exc)}{hint}"
        ) from exc


def _check(news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
    failures = []
    if news.get("verification_mode") not in ("pod", "direct"):
        failures.append(
            pulumi.dynamic.CheckFailure("verification_mode", "must be 'pod' or 'direct'")
        )
    if news.get("rerun") not in ("always", "on-change"):
        failures.append(pulumi.dynamic.CheckFailure("rerun", "must be 'always' or 'on-change'"))
    timeout = news.get("timeout_seconds")
    if not isinstance(timeout, int | float) or timeout <= 0:
        failures.append(pulumi.dynamic.CheckFailure("timeout_seconds", "must be > 0"))
    budget = news.get("latency_budget_ms")
    if not isinstance(budget, int | float) or budget < 0:
        failures.append(pulumi.dynamic.CheckFailure("latency_budget_ms", "must be ≥ 0"))
    peers = news.get(PEERS_KEY)
    if peers is not None and (
        not isinstance(peers, list)
        or not all(isinstance(p, dict) and {"database", "role"} <= p.keys() for p in peers)
    ):
        failures.append(
            pulumi.dynamic.CheckFailure(PEERS_KEY, "must be a list of {database, role}")
        )
    allowed = news.get("allowed_databases")
    if allowed is not None and (
        not isinstance(allowed, list) or not all(isinstance(d, str) and d for d in allowed)
    ):
        failures.append(pulumi.dynamic.CheckFailure("allowed_databases", "must be a list of names"))
    return pulumi.dynamic.CheckResult(news, failures)
