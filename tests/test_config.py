"""Settings: defaults, TOML, environment, flags, in that order of precedence."""

from pathlib import Path

import pytest

from lite_csms import config


def test_defaults_need_no_file() -> None:
    settings = config.load(environ={})
    # The database no longer depends on the working directory (see test_operator_cli.py).
    assert settings.port == 9000 and settings.database == str(config.default_database({}))
    assert Path(settings.database).is_absolute()
    assert settings.ws_ping_interval == 0
    assert settings.dead_peer_bound == 300 + 30 * 4


def test_layers_override_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('port = 9100\nheartbeat_interval = 600\nsubprotocols = ["ocpp1.6"]\n')
    env = {"LITE_CSMS_PORT": "9200", "LITE_CSMS_AUTO_REGISTER": "yes"}
    settings = config.load(toml, environ=env, overrides={"port": 9300, "host": None})
    assert settings.port == 9300
    assert settings.heartbeat_interval == 600
    assert settings.auto_register is True
    assert settings.subprotocols == ("ocpp1.6",)
    assert settings.host == "0.0.0.0"
    assert config.load(toml, environ=env).port == 9200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("port = [", "malformed"),
        ("prot = 1", "unknown key"),
        ("[server]\nport = 9100", r"\[server\] is a table"),
        ("handshake_timeout = 0", "more than 0"),
        ("port = 'x'", "expected a number"),
        ("port = 70000", "out of range"),
        ("subprotocols = ['ocpp1.5']", "unsupported"),
        ("auto_register = 'maybe'", "true or false"),
        ("heartbeat_interval = -5", "negative"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, content: str, message: str) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text(content)
    with pytest.raises(config.ConfigError, match=message):
        config.load(toml, environ={})


def test_config_file_from_environment(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("port = 9555")
    assert config.load(environ={"LITE_CSMS_CONFIG": str(toml)}).port == 9555
    with pytest.raises(config.ConfigError, match="does not exist"):
        config.load(tmp_path / "missing.toml", environ={})


def test_the_service_config_is_read_when_none_is_named(tmp_path: Path, monkeypatch) -> None:
    # `lite-csms station add` as root must reach the database the service was configured with.
    system = tmp_path / "lite-csms.toml"
    monkeypatch.setattr(config, "SYSTEM_CONFIG", system)
    assert config.load(environ={}).port == 9000
    system.write_text(f'port = 9100\ndatabase = "{tmp_path / "x.sqlite3"}"\n')
    assert config.load(environ={}).port == 9100
    assert config.load(environ={}).database == str(tmp_path / "x.sqlite3")
    named = tmp_path / "named.toml"
    named.write_text("port = 9200\n")
    assert config.load(named, environ={}).port == 9200
    assert config.load(environ={"LITE_CSMS_CONFIG": str(named)}).port == 9200
