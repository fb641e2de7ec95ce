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
    toml.write_text('port = 9100\nheartbeat_interval = 600\nsubprotocols = ["ocpp1.6"]\n'
                    '[budget]\ncap = "25MB"\n')
    env = {"LITE_CSMS_PORT": "9200", "LITE_CSMS_AUTO_REGISTER": "yes"}
    settings = config.load(toml, environ=env, overrides={"port": 9300, "host": None})
    assert settings.port == 9300
    assert settings.heartbeat_interval == 600
    assert settings.auto_register is True
    assert settings.subprotocols == ("ocpp1.6",)
    assert settings.host == "0.0.0.0"
    assert settings.extra["budget"] == {"cap": "25MB"}
    assert config.load(toml, environ=env).port == 9200


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("port = [", "malformed"),
        ("prot = 1", "unknown key"),
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
