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
    ("gate", "hop_s", "fast", "must be a finite number"),
    ("gate", "hop_s", 3.0, "0.25..2.0"),
    ("gate", "detector_hop_s", 0.5, "0.02..0.25"),
    ("detector", "model", "", "detector folder"),
    ("audio", "block_ms", True, "must be an integer"),
    ("alerts", "classes", "pain", "list of strings"),
    ("alerts", "thresholds", {"pain": 1.5}, "alerts.thresholds.pain"),
    ("hear", "backend", "onnx", "auto, tf, torch or remote"),
    ("store", "url", "crywatch.db", "SQLAlchemy URL"),
    ("bus", "endpoint", "127.0.0.1:5557", "ZeroMQ endpoint"),
    ("bus", "control", "localhost", "ZeroMQ endpoint"),
    ("episodes", "quiet_s", float("inf"), "finite number"),
    ("service", "stall_s", float("nan"), "finite number"),
    ("service", "stage_timeout_s", 0.5, "1..600"),
    ("alerts", "classes", [], "at least one cry type"),
    ("alerts", "priorities", {"pain": "urgent"}, "high, medium, low"),
    ("alerts", "command", "/no/such/pager --now", "program '/no/such/pager' not found"),
    ("store", "url", "sqlite:///:memory:", "in-memory database loses the log"),
    ("store", "url", "sqlite://", "in-memory database loses the log"),
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


def test_cross_checks_against_the_head_and_the_unit_name_their_key(models):
    from monitor.classify import Classifier
    from monitor.config import AlertSettings, check_watchdog

    head = models.head
    with pytest.raises(ConfigError, match="alerts.thresholds.pian: not a class of head"):
        Classifier(head, 0.6, AlertSettings(thresholds={"pian": 0.5}))
    with pytest.raises(ConfigError, match="alerts.classes: 'pian' is not a class of head"):
        Classifier(head, 0.6, AlertSettings(classes=("pian",)))
    assert Classifier(head, 0.6, AlertSettings()).unsupported_alert_classes == ("neurological",)  # reported, allowed
    check_watchdog(Settings(), "20000000")  # the shipped unit: WatchdogSec=20
    with pytest.raises(ConfigError, match="bus.heartbeat_s: 1.0 s is not under half the unit's WatchdogSec"):
        check_watchdog(Settings(), "1500000")
    with pytest.raises(ConfigError, match="service.stall_s"):
        check_watchdog(Settings().with_overrides(service={"stall_s": 30.0}), "20000000")
