"""Secrets never leave the gate: fragment redaction, and the one redactor at the provider boundary.

`redact` removes a password and fragments of it from a text (libpq echoes mis-parsed URI parts).
`Redactor` is what the dynamic provider applies to everything it returns or raises (see
`provider.ConnectivityCheckProvider`): the password's fragments, and the uri and kubeconfig (and
the credentials inside a kubeconfig) as whole strings.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

_QUOTED = re.compile(r'"([^"]*)"')


def redact(text: str, secret: str | None, keep: Collection[str] = ()) -> str:
    """Remove the password and fragments of it (libpq echoes mis-parsed URI parts).

    Replaced: every run of ≥ 6 characters that also occurs in the password, and every quoted
    token of ≥ 4 characters that is part of the password, unless it is one of `keep` (the app,
    user, database and host names the messages legitimately quote).
    """
    if not secret:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        n = _longest_run_at(text, i, secret)
        if n >= _MIN_RUN:
            out.append("<redacted>")
            i += n
        else:
            out.append(text[i])
            i += 1
    result = "".join(out)

    def _sub(m: re.Match[str]) -> str:
        token = m.group(1)
        if len(token) >= _MIN_QUOTED and token in secret and token not in keep:
            return '"<redacted>"'
        return m.group(0)

    return _QUOTED.sub(_sub, result)


_MIN_RUN: Final = 6
_MIN_QUOTED: Final = 4


def _longest_run_at(text: str, i: int, secret: str) -> int:
    """Length of the longest prefix of text[i:] that occurs in secret (0 if < _MIN_RUN)."""
    if i + _MIN_RUN > len(text) or text[i : i + _MIN_RUN] not in secret:
        return 0
    n = _MIN_RUN
    while i + n < len(text) and text[i : i + n + 1] in secret:
        n += 1
    return n


def redact_report(value: Any, secret: str | None, keep: Collection[str] = ()) -> Any:
    """`redact` applied to every string in a report (recursively)."""
    if isinstance(value, str):
        return redact(value, secret, keep)
    if isinstance(value, list):
        return [redact_report(v, secret, keep) for v in value]
    if isinstance(value, dict):
        return {k: redact_report(v, secret, keep) for k, v in value.items()}
    return value


REDACTED: Final = "<redacted>"

_KUBECONFIG_SECRET_KEYS: Final = frozenset(
    {"token", "password", "client-key-data", "client-certificate-data", "id-token", "refresh-token"}
)
"""Leaves of a kubeconfig that are credentials (users[].user and auth-provider config)."""


def kubeconfig_secrets(kubeconfig: Any) -> list[str]:
    """Every credential leaf of a kubeconfig (a dict, or YAML/JSON text), for exact redaction."""
    doc: Any = kubeconfig
    if isinstance(kubeconfig, str):
        import yaml  # noqa: PLC0415 - only when a kubeconfig is given

        try:
            doc = yaml.safe_load(kubeconfig)
        except yaml.YAMLError:
            return []
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                if k in _KUBECONFIG_SECRET_KEYS and isinstance(v, str) and v:
                    found.append(v)
                else:
                    walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(doc)
    return found


@dataclass(frozen=True)
class Redactor:
    """The provider boundary's redactor: built once per call from the inputs, applied to every
    string that leaves the provider (outputs, check failures, exception messages).

    `password` gets fragment redaction (`redact`); each of `exact` (the uri, the password
    percent-encoded, the kubeconfig text and its credentials) is replaced wherever it occurs
    whole. `keep`: names the messages quote on purpose."""

    password: str | None
    exact: tuple[str, ...] = ()
    keep: frozenset[str] = frozenset()

    @classmethod
    def of(cls, password: Any, others: Iterable[Any], keep: Collection[str] = ()) -> Redactor:
        pw = password if isinstance(password, str) and password else None
        exact: list[str] = []
        for value in others:
            if isinstance(value, str) and value:
                exact.append(value)
                exact.extend(
                    kubeconfig_secrets(value)
                    if "\n" in value or value.lstrip().startswith("{")
                    else []
                )
            elif isinstance(value, Mapping):
                exact.extend(kubeconfig_secrets(value))
        if pw is not None:
            exact.append(quote(pw, safe=""))
        # longest first: a secret that contains another is replaced whole
        ordered = sorted({e for e in exact if len(e) >= _MIN_QUOTED}, key=len, reverse=True)
        return cls(password=pw, exact=tuple(ordered), keep=frozenset(keep))

    def text(self, text: str) -> str:
        for secret in self.exact:
            text = text.replace(secret, REDACTED)
        return redact(text, self.password, self.keep)

    def value(self, value: Any) -> Any:
        """`text` applied to every string in a value (dicts, lists, tuples; keys too)."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list | tuple):
            return type(value)(self.value(v) for v in value)
        if isinstance(value, dict):
            return {self.value(k): self.value(v) for k, v in value.items()}
        return value
