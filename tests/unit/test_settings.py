"""Settings of a service that keeps nothing (the console): read without a database or a broker."""

from __future__ import annotations

import pytest

from shared.settings import Settings, SettingsError

SECRET = "s" * 32


def test_a_service_that_keeps_nothing_starts_without_database_or_broker():
    settings = Settings.from_env({"LIAISON_SECRET_KEY": SECRET, "IDENTITY_URL": "http://identity:8001",
                                  "CONSOLE_URL": "https://console.example"}, stores=False)
    assert settings.database_url == "" and settings.broker_url == ""
    assert settings.identity_url == "http://identity:8001" and settings.console_url == "https://console.example"
    assert settings.campaigns_url == "http://127.0.0.1:8003"  # the defaults as for every service
    # not read at all: a value left over from another service's environment is no error either
    ignored = Settings.from_env({"LIAISON_SECRET_KEY": SECRET, "DATABASE_URL": "mysql://x", "BROKER_URL": "kafka://x"},
                                stores=False)
    assert ignored.database_url == "" and ignored.broker_url == ""


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "LIAISON_SECRET_KEY"),
        ({"LIAISON_SECRET_KEY": SECRET, "CONSOLE_URL": "ftp://console"}, "CONSOLE_URL"),
        ({"LIAISON_SECRET_KEY": SECRET, "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
    ],
)
def test_its_other_settings_are_still_checked(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env, stores=False)


def test_a_service_that_stores_still_needs_both():
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        Settings.from_env({"LIAISON_SECRET_KEY": SECRET, "BROKER_URL": "amqp://x//"})
    with pytest.raises(SettingsError, match="BROKER_URL"):
        Settings.from_env({"LIAISON_SECRET_KEY": SECRET, "DATABASE_URL": "postgresql://x/db"})


def test_the_console_starts_and_answers_without_database_or_broker(monkeypatch):
    from services.console.app import create_app

    monkeypatch.setenv("DATABASE_URL", "")
    monkeypatch.setenv("BROKER_URL", "")
    monkeypatch.setenv("LIAISON_SECRET_KEY", SECRET)
    app = create_app()
    try:
        assert app.test_client().get("/healthz").json == {"status": "ok"}
    finally:
        app.extensions["console"].backend.close()
