import dataclasses
from typing import get_type_hints

import pytest

from monitor.config import BED_MAX_LENGTH, ConfigError, Settings, load_settings, settings_from_dict
from tests.conftest import run_crywatch


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
    ("gate", "hop_s", 3.0, r"3 is outside the allowed range \[0.25, 2\] seconds"),
    ("gate", "detector_hop_s", 0.5, r"\[0.02, 0.25\]"),
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
    ("service", "stage_timeout_s", 0.5, r"\[1, 600\] seconds: longer than the slowest embedder batch"),
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


@pytest.mark.parametrize("section, key, value, allowed", [
    ("alerts", "min_windows", 1_000_000_000, "[0, 30] windows"),  # no type could ever be decided
    ("alerts", "crying_s", 2.0, "[5, 3600] seconds"),  # every whimper an alarm
    ("episodes", "quiet_s", 1e12, "[0.5, 120] seconds"),  # no episode would ever close
    ("audio", "ring_seconds", 1e9, "[6, 600] seconds"),  # was a traceback allocating the ring
    ("audio", "ring_seconds", 5.0, "[6, 600] seconds"),
    ("alerts", "high_pitch_s", 1e6, "[1, 3600] seconds"),
    ("alerts", "thresholds", {"pain": 1.0}, "(0, 1)"),
    ("audio", "speed", -1.0, "[0, 1000]"),
    ("bus", "heartbeat_s", 5.0, "[0.1, 2] seconds"),
    ("store", "min_free_mb", -1.0, "[0, 1e+06] MB"),
    ("service", "stall_s", 0.0, "(0, 60] seconds"),
    ("serve", "port", 70_000, "[1, 65535]"),
])
def test_out_of_range_numbers_name_the_key_the_value_and_the_range(section, key, value, allowed):
    with pytest.raises(ConfigError) as refused:
        settings_from_dict({section: {key: value}})
    shown_key, shown = (f"{key}.pain", value["pain"]) if isinstance(value, dict) else (key, value)
    assert str(refused.value).startswith(f"config key {section}.{shown_key}: {shown:g} is outside the allowed range "
                                         f"{allowed}"), refused.value


def test_keys_an_older_crywatch_read_are_refused_with_what_replaced_them():
    with pytest.raises(ConfigError, match=r"^config key alerts\.raise_windows: removed: a cry type is now decided on the "
                                          r"whole spell's evidence \(see \[alerts\] min_windows\)"):
        settings_from_dict({"alerts": {"raise_windows": 2}})
    with pytest.raises(ConfigError, match=r"^config key alerts\.clear_windows: removed: .* ends with its crying spell"):
        settings_from_dict({"alerts": {"clear_windows": 4}})


def test_the_crying_alarm_escalates_only_after_it_is_raised_and_only_if_it_is_on():
    settings_from_dict({"alerts": {"crying_s": 0, "escalate_s": 0}})  # both off
    with pytest.raises(ConfigError, match=r"alerts\.escalate_s: 20 must be between crying_s \(30 s\) and 7200"):
        settings_from_dict({"alerts": {"escalate_s": 20}})
    with pytest.raises(ConfigError, match=r"alerts\.escalate_s: 300 .* with the crying alarm on"):
        settings_from_dict({"alerts": {"crying_s": 0}})


def _numeric_keys():
    for section in dataclasses.fields(Settings):
        cls = get_type_hints(Settings)[section.name]
        for key, annotation in get_type_hints(cls).items():
            if annotation in (int, float):
                yield section.name, key, annotation


@pytest.mark.parametrize("section, key, annotation", list(_numeric_keys()))
def test_every_numeric_key_has_a_lower_and_an_upper_bound(section, key, annotation):
    for huge in (10**15, -(10**15)):
        with pytest.raises(ConfigError, match=rf"^config key {section}\.{key}: "):
            settings_from_dict({section: {key: annotation(huge)}})


def test_a_bed_name_longer_than_the_log_holds_is_a_config_error():
    settings_from_dict({"service": {"bed": "b" * BED_MAX_LENGTH}})
    with pytest.raises(ConfigError, match=rf"^config key service\.bed: 'b{{65}}' has 65 characters; the log holds at "
                                          rf"most {BED_MAX_LENGTH}"):
        settings_from_dict({"service": {"bed": "b" * (BED_MAX_LENGTH + 1)}})


@pytest.mark.parametrize("endpoint", ["tcp://127.0.0.1:99999", "tcp://127.0.0.1:0", "tcp://127.0.0.1:port"])
def test_a_tcp_port_outside_1_65535_is_refused_not_replaced_by_a_random_one(endpoint):
    with pytest.raises(ConfigError, match=r"bus\.endpoint: .*the port must be 1\.\.65535, or \*"):
        settings_from_dict({"bus": {"endpoint": endpoint}})
    settings_from_dict({"bus": {"endpoint": "tcp://127.0.0.1:5557"}})


def test_crywatch_run_refuses_a_huge_ring_with_one_line_not_a_traceback(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[audio]\nring_seconds = 1e9\n")
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", "scenario:quiet", timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "crywatch: error: config key audio.ring_seconds: 1e+09 is outside the allowed range [6, 600] seconds: audio "
        "kept for the stages to catch up; 600 s of 16 kHz float32 is 38 MB"]


@pytest.mark.parametrize("values, message", [
    # With the default 30 s ring, a stalled gate was lapped before it counted as behind: 20.7 s went unjudged.
    ({"service": {"max_lag_s": 60.0}}, r"^config key service\.max_lag_s: 60 s needs audio\.ring_seconds of at least 65 s "
                                       r"\(it is 30\)"),
    ({"audio": {"ring_seconds": 20.0}, "service": {"max_lag_s": 15.5}}, r"service\.max_lag_s: 15\.5 s needs "
                                                                         r"audio\.ring_seconds of at least 20\.5 s"),
    # The allowed minimum: a file at speed 0 stopped at 2 s of audio, health "ok", forever.
    ({"audio": {"ring_seconds": 6.0}}, r"^config key audio\.ring_seconds: 6 s is too short for gate\.hop_s = 1 and "
                                       r"gate\.detector_hop_s = 0\.1 .*make it at least 7\.8 s"),
    ({"audio": {"ring_seconds": 8.5}, "gate": {"hop_s": 2.0, "detector_hop_s": 0.25}, "service": {"max_lag_s": 1.0}},
     r"audio\.ring_seconds: 8\.5 s is too short for gate\.hop_s = 2 and gate\.detector_hop_s = 0\.25"),
])
def test_keys_that_blind_the_monitor_together_are_refused_naming_both(values, message):
    with pytest.raises(ConfigError, match=message):
        settings_from_dict(values)
    with pytest.raises(ConfigError, match=message):  # and as command-line overrides
        Settings().with_overrides(**values)


def test_the_shortest_ring_the_config_allows_plays_a_file_at_speed_0_to_its_end(tmp_path, models):
    import threading

    from monitor.service import Service

    config = tmp_path / "config.toml"
    config.write_text("[audio]\nring_seconds = 7.8\n[service]\nmax_lag_s = 2.0\n")
    settings = load_settings(config).with_overrides(audio={"input": "scenario:nicu", "speed": 0.0},
                                                    store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
                                                    bus={"endpoint": "tcp://127.0.0.1:*"})
    service = Service(settings, models=models)
    summaries: list = []
    runner = threading.Thread(target=lambda: summaries.append(service.run()))
    runner.start()
    runner.join(120)  # the scenario plays in seconds; at the old minimum of 6 s it stopped at 2 s for ever
    if runner.is_alive():
        service.request_stop()
        runner.join(30)
    [summary] = summaries
    assert service.ring.end == 60 * 16_000 and summary.failed is None, f"stopped at {service.ring.end / 16_000} s"
    assert [(ep.label, ep.windows > 0) for ep in summary.episodes] == [("other_cry", True)]  # the scenario's spell


def test_crywatch_run_refuses_a_lag_bound_the_ring_cannot_hold_with_one_line(tmp_path):
    config = tmp_path / "config.toml"
    config.write_text("[service]\nmax_lag_s = 60\n")
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", "scenario:quiet", timeout=60)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("crywatch: error: config key service.max_lag_s: 60 s needs audio.ring_seconds of at least 65 s")
