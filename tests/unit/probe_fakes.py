"""A fake CoreV1Api for the probe pod runner (`pod.run_pod_probe`, `pod.run_batch_probe`).

It is not an API server: it replays scripted pod states and a scripted log, and records every
call, so each path of the runner can be checked for what it promises (a result per app, the pod
deleted whatever happens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from postgres_apps.verification.pod import APP_MARKER, CONTAINER
from postgres_apps.verification.report import REPORT_SCHEMA


def report_line(app: str) -> str:
    return json.dumps({"schema": REPORT_SCHEMA, "app": app, "runner": "pod"})


def probe_log(*outputs: str) -> str:
    """probe.sh's log in a probe pod: app i's output under `@app <i>`."""
    return "".join(f"{APP_MARKER}{i}\n{out}\n" for i, out in enumerate(outputs))


class ApiError(Exception):
    """Shaped like kubernetes.client.ApiException (status, reason, body)."""

    def __init__(self, status: int, message: str = "") -> None:
        super().__init__(f"({status})")
        self.status = status
        self.reason = "Reason"
        self.body = json.dumps({"message": message or f"status {status}"})


def pod_state(
    phase: str,
    *,
    waiting: tuple[str, str] | None = None,
    exit_code: int | None = None,
    reason: str | None = None,
    conditions: tuple[tuple[str, str, str, str], ...] = (),
) -> SimpleNamespace:
    """A pod's status as the official client models it (only the fields the runner reads)."""
    state = SimpleNamespace(waiting=None, terminated=None, running=None)
    if waiting:
        state.waiting = SimpleNamespace(reason=waiting[0], message=waiting[1])
    if exit_code is not None:
        state.terminated = SimpleNamespace(exit_code=exit_code, reason="Completed")
    return SimpleNamespace(
        status=SimpleNamespace(
            phase=phase,
            reason=reason,
            container_statuses=[SimpleNamespace(name=CONTAINER, state=state)],
            conditions=[
                SimpleNamespace(type=t, status=s, reason=r, message=m) for t, s, r, m in conditions
            ],
        )
    )


class FakeCoreV1:
    """Records every call; `read_namespaced_pod` replays `states` (the last one repeats); the log
    is `log`, or `log(pod body)` for the pod created under that name."""

    def __init__(
        self,
        states: list[Any],
        log: str | Callable[[dict[str, Any]], str] = "",
        *,
        create_error: BaseException | None = None,
        delete_error: Exception | None = None,
        read_error: BaseException | None = None,
        leftovers: tuple[str, ...] = (),
        secrets: tuple[str, ...] = (),
    ) -> None:
        self.states = list(states)
        self.log = log
        self.create_error = create_error
        self.delete_error = delete_error
        self.read_error = read_error
        self.leftovers = leftovers
        self.secrets = secrets
        self.calls: list[tuple[str, Any]] = []
        self.created: dict[str, dict[str, Any]] = {}

    def list_namespaced_pod(self, namespace: str, **kw: Any) -> Any:
        self.calls.append(("list", kw.get("label_selector")))
        items = [
            SimpleNamespace(
                metadata=SimpleNamespace(name=n, labels={"app.kubernetes.io/name": n.split("-")[0]})
            )
            for n in self.leftovers
        ]
        return SimpleNamespace(items=items)

    def create_namespaced_pod(self, namespace: str, body: dict[str, Any], **kw: Any) -> Any:
        self.calls.append(("create", body["metadata"]["name"]))
        if self.create_error:
            raise self.create_error
        self.created[body["metadata"]["name"]] = body
        return body

    def read_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> Any:
        self.calls.append(("read", name))
        if self.read_error:
            raise self.read_error
        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if isinstance(state, BaseException):
            raise state
        return state

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> str:
        self.calls.append(("log", name))
        assert kw.get("container") == CONTAINER
        return self.log(self.created[name]) if callable(self.log) else self.log

    def read_namespaced_secret(self, name: str, namespace: str, **kw: Any) -> Any:
        self.calls.append(("secret", name))
        if name not in self.secrets:
            raise ApiError(404, f'secrets "{name}" not found')
        return SimpleNamespace(metadata=SimpleNamespace(name=name))

    def delete_namespaced_pod(self, name: str, namespace: str, **kw: Any) -> None:
        self.calls.append(("delete", name))
        assert kw.get("grace_period_seconds") == 0
        if self.delete_error:
            raise self.delete_error

    def deleted(self) -> list[str]:
        return [arg for op, arg in self.calls if op == "delete"]

    def only_created(self) -> dict[str, Any]:
        [body] = self.created.values()
        return body


class Clock:
    """A clock the runner's `sleep` moves forward: timeouts without waiting."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s
