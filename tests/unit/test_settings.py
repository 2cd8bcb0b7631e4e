"""Settings: defaults from the contract, validation, secrets hidden."""

from __future__ import annotations

import pytest

from steamprice.settings import Secret, Settings, SettingsError, load_settings

CONTRACT_ENV = (
    "KAFKA_BROKER APP_ID MYSQL_HOST MYSQL_PORT MYSQL_USER MYSQL_PASSWORD MYSQL_DB STEAM_STORE_URL "
    "STEAM_API_URL STEAM_API_KEY STEAMSPY_URL STEAM_COUNTRIES STEAM_MAX_REQUESTS_PER_MINUTE "
    "STEAM_BATCH_SIZE STEAM_BACKOFF_SECONDS RECRAWL_INTERVAL_SECONDS DISCORD_WEBHOOK_URL "
    "ENABLE_DISCORD WEB_PORT ENABLE_METRICS TABLE_STORE DATA_DIR GROUP_INSTANCE_ID BROKER_SESSION_TIMEOUT"
).split()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    for name in CONTRACT_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env file


def test_contract_defaults(clean_env: None) -> None:
    s = load_settings()
    assert s.kafka_broker == "kafka://127.0.0.1:9092"
    assert s.app_id == "steam-prices"
    assert (s.mysql_host, s.mysql_port, s.mysql_user, s.mysql_db) == (
        "127.0.0.1",
        3306,
        "root",
        "steam_db",
    )
    assert s.mysql_password.get() == ""
    assert s.steam_store_url == "https://store.steampowered.com"
    assert s.steam_api_url == "https://api.steampowered.com"
    assert s.steamspy_url == "https://steamspy.com/api.php"
    assert s.steam_countries == ("us",)
    assert s.steam_max_requests_per_minute == 40
    assert s.steam_batch_size == 100
    assert s.steam_backoff_seconds == 30
    assert s.recrawl_interval_seconds == 21600
    assert s.enable_discord is True and s.discord_enabled is False
    assert s.web_port == 6066 and s.enable_metrics is True
    assert s.table_store == "rocksdb://"  # not in the contract: what a worker runs


def test_environment_and_dotenv(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    from pathlib import Path

    Path(str(tmp_path), ".env").write_text("STEAM_COUNTRIES=us, GB ,jp\nWEB_PORT=7000\n")
    monkeypatch.setenv("WEB_PORT", "7100")
    s = load_settings(search_path=str(tmp_path))
    assert s.steam_countries == ("us", "gb", "jp")
    assert s.web_port == 7100  # the environment wins over .env


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("STEAM_COUNTRIES", "usa", "STEAM_COUNTRIES"),
        ("STEAM_BATCH_SIZE", "0", "STEAM_BATCH_SIZE"),
        ("STEAM_BATCH_SIZE", "ten", "STEAM_BATCH_SIZE"),
        ("WEB_PORT", "70000", "WEB_PORT"),
        ("APP_ID", "bad id", "APP_ID"),
        ("STEAM_STORE_URL", "ftp://x", "STEAM_STORE_URL"),
        ("ENABLE_DISCORD", "maybe", "ENABLE_DISCORD"),
        ("TABLE_STORE", "redis://x", "TABLE_STORE"),
        ("GROUP_INSTANCE_ID", "host 1", "GROUP_INSTANCE_ID"),
        ("GROUP_INSTANCE_ID", "x" * 250, "GROUP_INSTANCE_ID"),
        ("BROKER_SESSION_TIMEOUT", "5", "BROKER_SESSION_TIMEOUT"),
        ("FETCH_WAIT_MS", "60000", "FETCH_WAIT_MS"),
        ("FETCH_WAIT_MS", "-1", "FETCH_WAIT_MS"),
        ("FETCH_MIN_BYTES", "0", "FETCH_MIN_BYTES"),
    ],
)
def test_bad_values_name_the_setting(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert message in str(err.value)


def test_the_data_dir_is_per_app_id_unless_set(
    clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings().data_dir == "./data/steam-prices"
    monkeypatch.setenv("APP_ID", "staging")
    assert load_settings().data_dir == "./data/staging"  # two pipelines, two directories
    assert Settings(app_id="other").data_dir == "./data/other"
    monkeypatch.setenv("DATA_DIR", "/var/lib/steamprice")
    assert load_settings().data_dir == "/var/lib/steamprice"


def test_group_membership_defaults(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_settings()
    assert s.group_instance_id == ""  # made once and kept in DATA_DIR
    assert s.broker_session_timeout == 45.0  # Kafka's default, not Faust's 60 s
    monkeypatch.setenv("GROUP_INSTANCE_ID", "worker-1.eu")
    assert load_settings().group_instance_id == "worker-1.eu"


def test_secrets_never_show(clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MYSQL_PASSWORD", "hunter2")
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "https://discord.com/api/webhooks/1/tok-secret")
    monkeypatch.setenv("STEAM_API_KEY", "KEY-SECRET")
    s = load_settings()
    text = repr(s) + str(s)
    for secret in ("hunter2", "tok-secret", "KEY-SECRET"):
        assert secret not in text
    assert s.discord_enabled and s.mysql_password.get() == "hunter2"
    monkeypatch.setenv("DISCORD_WEBHOOK_URL", "not-a-url-tok-secret")
    with pytest.raises(SettingsError) as err:
        load_settings()
    assert "tok-secret" not in str(err.value)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.app_id = "x"  # type: ignore[misc]
    assert Secret("a") == Secret("a") and not Secret("")
