"""Configuration readers: bad values stop start-up with a message naming the variable (never the value)."""

import pytest

from teleconsult.config import ConfigError, env_bool, env_int, env_list, env_url


def test_env_int_names_variable_on_garbage():
    with pytest.raises(ConfigError, match="WORKERS must be a whole number"):
        env_int("WORKERS", 2, env={"WORKERS": "two"})


def test_env_int_bounds():
    with pytest.raises(ConfigError, match="at least 1"):
        env_int("WORKERS", 2, minimum=1, env={"WORKERS": "0"})
    assert env_int("WORKERS", 2, env={}) == 2


def test_env_bool_rejects_unknown_words():
    with pytest.raises(ConfigError, match="DEBUG must be one of"):
        env_bool("DEBUG", False, env={"DEBUG": "maybe"})
    assert env_bool("DEBUG", False, env={"DEBUG": "on"}) is True


def test_env_url_checks_scheme_without_echoing_secret():
    with pytest.raises(ConfigError) as raised:
        env_url("DATABASE_URL", ("postgres",), env={"DATABASE_URL": "mysql://u:hunter2@db/x"})
    assert "DATABASE_URL" in str(raised.value)
    assert "hunter2" not in str(raised.value)


def test_env_list_splits_and_trims():
    assert env_list("ALLOWED_HOSTS", [], env={"ALLOWED_HOSTS": " a.pe , b.pe ,"}) == ["a.pe", "b.pe"]
