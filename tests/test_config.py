import pytest

from monitor.config import ConfigError, Settings, load_settings, settings_from_dict


def test_shipped_config_matches_the_defaults():
    assert load_settings() == Settings()


def test_unknown_key_is_named_with_the_known_ones(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[gate]\nhop = 0.5\n")
    with pytest.raises(ConfigError, match=r"gate\.hop: unknown key; known keys: .*hop_s"):
        load_settings(path)


def test_unknown_section_is_named():
    with pytest.raises(ConfigError, match="gates: unknown section"):
        settings_from_dict({"gates": {}})


@pytest.mark.parametrize("section, key, value, message", [
    ("gate", "hop_s", "fast", "must be a number"),
    ("gate", "hop_s", 3.0, "0.25..2.0"),
    ("gate", "detector_hop_s", 0.5, "0.02..0.25"),
    ("detector", "model", "", "detector folder"),
    ("audio", "block_ms", True, "must be an integer"),
    ("alerts", "classes", "pain", "list of strings"),
    ("alerts", "thresholds", {"pain": 1.5}, "alerts.thresholds.pain"),
    ("hear", "backend", "onnx", "auto, tf or torch"),
    ("store", "url", "crywatch.db", "SQLAlchemy URL"),
    ("bus", "endpoint", "127.0.0.1:5557", "ZeroMQ endpoint"),
])
def test_bad_values_name_their_key(section, key, value, message):
    with pytest.raises(ConfigError, match=rf"{section}\.{key}.*{message}|{message}.*"):
        settings_from_dict({section: {key: value}})


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[gate\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_overrides_are_validated_like_the_file():
    settings = Settings().with_overrides(audio={"input": "scenario:nicu", "speed": None})
    assert settings.audio.input == "scenario:nicu" and settings.audio.speed == 1.0
    with pytest.raises(ConfigError, match="audio.speed"):
        Settings().with_overrides(audio={"speed": -1.0})
