"""`AppsReady`'s provider: it stores the apps it waited for and changes only when they do."""

from __future__ import annotations

from postgres_apps.verification.apps_ready import RESOURCE_ID, AppsReadyProvider


def test_create_and_update_store_the_sorted_apps() -> None:
    provider = AppsReadyProvider()
    created = provider.create({"apps": ["n8n", "app-test"]})
    assert (created.id, created.outs) == (RESOURCE_ID, {"apps": ["app-test", "n8n"]})
    updated = provider.update(RESOURCE_ID, created.outs or {}, {"apps": ["grafana", "n8n"]})
    assert updated.outs == {"apps": ["grafana", "n8n"]}


def test_diff_changes_only_when_the_set_of_apps_does_and_never_replaces() -> None:
    provider = AppsReadyProvider()
    same = provider.diff(RESOURCE_ID, {"apps": ["a", "b"]}, {"apps": ["b", "a"]})
    assert same.changes is False
    added = provider.diff(RESOURCE_ID, {"apps": ["a"]}, {"apps": ["a", "b"]})
    assert added.changes is True
    assert added.replaces == []
    # a state without the key (never written by this code) reads as no apps
    assert provider.diff(RESOURCE_ID, {}, {"apps": []}).changes is False
