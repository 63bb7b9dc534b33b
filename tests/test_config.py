"""Configuration comes only from HIS_* variables and is checked before start-up."""

import pytest

from his.config import ConfigError, Settings

GOOD_SECRET = "x" * 48


def test_production_requires_a_secret_key():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({})
    assert "HIS_SECRET_KEY" in info.value.problems
    assert "required in production" in str(info.value)


def test_production_refuses_a_short_secret_key():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HIS_SECRET_KEY": "short"})
    assert "at least 32" in info.value.problems["HIS_SECRET_KEY"]


def test_development_and_test_generate_a_throwaway_key():
    first = Settings.from_env({"HIS_ENV": "development"})
    second = Settings.from_env({"HIS_ENV": "test"})
    assert len(first.secret_key) >= 32
    assert first.secret_key != second.secret_key


def test_defaults():
    settings = Settings.from_env({"HIS_SECRET_KEY": GOOD_SECRET})
    assert settings.env == "production"
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.mllp_port == 2575
    assert settings.cookie_secure is True
    assert settings.database_url.startswith("sqlite+pysqlite:///")
    assert settings.database_url.endswith("instance/his.sqlite3")


def test_postgres_url_uses_psycopg3():
    settings = Settings.from_env(
        {"HIS_SECRET_KEY": GOOD_SECRET, "HIS_DATABASE_URL": "postgresql://u@db:5432/his"}
    )
    assert settings.database_url == "postgresql+psycopg://u@db:5432/his"


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("HIS_PORT", "eighty", "expected an integer"),
        ("HIS_PORT", "70000", "between 1 and 65535"),
        ("HIS_MLLP_PORT", "0", "between 1 and 65535"),
        ("HIS_MLLP_PORT", "8000", "must differ from HIS_PORT"),
        ("HIS_ENV", "staging", "must be one of"),
        ("HIS_DATABASE_URL", "mysql://root@localhost/his", "only SQLite"),
        ("HIS_COOKIE_SECURE", "maybe", "true or false"),
        ("HIS_LOG_FORMAT", "xml", "json or console"),
        ("HIS_DEFAULT_LOCALE", "fr", "vi or en"),
        ("HIS_TOKEN_TTL_MINUTES", "0", "between"),
    ],
)
def test_bad_values_are_named(variable, value, message):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HIS_SECRET_KEY": GOOD_SECRET, variable: value})
    assert message in info.value.problems[variable]


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HIS_PORT": "x", "HIS_ENV": "production", "HIS_LOG_LEVEL": "LOUD"})
    assert set(info.value.problems) == {"HIS_PORT", "HIS_SECRET_KEY", "HIS_LOG_LEVEL"}


def test_create_app_refuses_bad_configuration(monkeypatch):
    from his import create_app

    monkeypatch.delenv("HIS_SECRET_KEY", raising=False)
    monkeypatch.setenv("HIS_ENV", "production")
    with pytest.raises(ConfigError):
        create_app()


@pytest.mark.parametrize("prefix", ["HIS_BHYT_GATEWAY", "HIS_EPRESCRIPTION", "HIS_BHXH_GATEWAY"])
def test_an_outside_service_needs_an_http_url_and_its_credentials(prefix):
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"HIS_ENV": "test", f"{prefix}_URL": "https://gw.example/"})
    assert set(info.value.problems) == {f"{prefix}_USERNAME", f"{prefix}_PASSWORD"}
    with pytest.raises(ConfigError) as info:
        Settings.from_env(
            {
                "HIS_ENV": "test",
                f"{prefix}_URL": "ftp://gw.example",
                f"{prefix}_USERNAME": "u",
                f"{prefix}_PASSWORD": "p",
            }
        )
    assert info.value.problems == {f"{prefix}_URL": "must be an http(s) URL"}


def test_the_claim_gateway_and_the_signing_keys_folder(tmp_path):
    settings = Settings.from_env(
        {
            "HIS_ENV": "test",
            "HIS_INSTANCE_DIR": str(tmp_path),
            "HIS_BHXH_GATEWAY_URL": "https://gdbhyt.example/api/",
            "HIS_BHXH_GATEWAY_USERNAME": "91001_BV",
            "HIS_BHXH_GATEWAY_PASSWORD": "secret",
        }
    )
    assert settings.bhxh_gateway_url == "https://gdbhyt.example/api"
    assert settings.bhxh_gateway_timeout == 30.0
    assert settings.claim_keys_dir == tmp_path / "claim-keys"
    assert "secret" not in repr(settings)
