"""Settings: storage by connection string locally, by endpoint URLs and the managed identity on Azure."""

from __future__ import annotations

import pytest

from shared.settings import Settings, SettingsError


def test_connection_string_wins_when_present():
    settings = Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true"})
    assert settings.storage.connection_string == "UseDevelopmentStorage=true"


def test_identity_based_storage_from_the_urls_infra_sets():
    settings = Settings.from_env({"AUTHWATCH_STORAGE_TABLE_URL": "https://st1.table.core.windows.net/",
                                  "AUTHWATCH_STORAGE_QUEUE_URL": "https://st1.queue.core.windows.net/"})
    assert settings.storage.connection_string is None
    assert settings.storage.table_url == "https://st1.table.core.windows.net/"
    client = settings.storage.queue("evaluations")
    assert client.queue_name == "evaluations" and client.account_name == "st1"


def test_no_storage_at_all_names_the_settings():
    with pytest.raises(SettingsError, match="AUTHWATCH_STORAGE_TABLE_URL"):
        Settings.from_env({})


@pytest.mark.parametrize(("name", "value"), [("AUTHWATCH_HISTORY_DAYS", "0"), ("AUTHWATCH_INTERVAL_MINUTES", "1"),
                                             ("AUTHWATCH_SIGNIN_OVERLAP_HOURS", "0"),
                                             ("AUTHWATCH_SIGNIN_OVERLAP_HOURS", "two"),
                                             ("AUTHWATCH_GRAPH_URL", "http://graph.example")])
def test_bad_values_are_refused_with_the_setting_named(name, value):
    with pytest.raises(SettingsError, match=name):
        Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "x", name: value})


def test_the_sign_in_overlap_defaults_to_three_hours_and_reaches_the_monitor():
    from datetime import timedelta

    from shared.bootstrap import build_monitor

    assert Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "x"}).signin_overlap_hours == 3
    settings = Settings.from_env({"AUTHWATCH_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
                                  "AUTHWATCH_SIGNIN_OVERLAP_HOURS": "6"})
    assert build_monitor(settings).signin_overlap == timedelta(hours=6)
