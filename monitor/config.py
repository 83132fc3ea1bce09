"""config.toml → typed, validated settings. Validated once, here; every error names its key."""
from __future__ import annotations

import dataclasses
import ipaddress
import math
import shlex
import shutil
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, get_type_hints
from urllib.parse import urlsplit

from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = PROJECT_ROOT / "config.toml"
# The public pin seen in the wild for google/hear (HEAR.md); sites may pin their own.
HEAR_DEFAULT_REVISION = "9b2eb2853c426676255cc6ac5804b7f1fe8e563f"


class ConfigError(ValueError):
    """A bad setting; the message names the key and what would fix it."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key {key}: {message}")


def _within(value: float, low: float, high: float, key: str, unit: str = "", *, open_low: bool = False,
            open_high: bool = False, why: str = "") -> None:
    """A number inside its sane range; the error names the key, the value and the range (and why, if not obvious)."""
    above = value > low if open_low else value >= low
    below = value < high if open_high else value <= high
    interval = f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}{' ' + unit if unit else ''}"
    _check(above and below, key, f"{value:g} is outside the allowed range {interval}{': ' + why if why else ''}")


LOOKAHEAD_ALLOWANCE_S = 1.0  # room for a detector's look-ahead in the ring (the shipped ones look 0.46 s ahead)
LAG_MARGIN_S = 5.0  # the ring holds this much more than max_lag_s: a window, the onset lead and the look-back behind it
BED_MAX_LENGTH = 64  # the log's bed columns (monitor/store/database.py) hold this many characters
LABEL_MAX_LENGTH = 32  # and its alarm labels this many


@dataclass(frozen=True)
class AudioSettings:
    input: str = "mic"  # mic | PATH | scenario:NAME
    device: str = ""  # name substring or index; "" = the system default input
    block_ms: int = 50
    ring_seconds: float = 30.0
    speed: float = 1.0  # file/scenario playback: 1 = real time, 0 = as fast as possible

    def validate(self, section: str) -> None:
        _within(self.block_ms, 10, 500, f"{section}.block_ms", "ms")
        _within(self.ring_seconds, 6, 600, f"{section}.ring_seconds", "seconds",
                why="audio kept for the stages to catch up; 600 s of 16 kHz float32 is 38 MB")
        _within(self.speed, 0, 1000, f"{section}.speed", why="0 = as fast as possible, 1 = real time")
        _check(bool(self.input), f"{section}.input", "must be mic, a file path or scenario:NAME")


@dataclass(frozen=True)
class DetectorSettings:
    model: str = "models/cry-detector-v2"  # detector folder; relative paths are relative to the project root

    def validate(self, section: str) -> None:
        _check(bool(self.model), f"{section}.model", "must name a detector folder (detector.json + weights)")

    def model_path(self) -> Path:
        return _project_path(self.model)


@dataclass(frozen=True)
class GateSettings:
    detector_hop_s: float = 0.1  # how often the detector scores the newest audio
    hop_s: float = 1.0  # at most one 2 s window per hop goes to the embedder
    onset_lead_s: float = 0.5  # a run's first window starts this long before its onset
    min_active_fraction: float = 0.2  # share of a window's detector frames that must be cry

    def validate(self, section: str) -> None:
        _within(self.detector_hop_s, 0.02, 0.25, f"{section}.detector_hop_s", "seconds")
        _within(self.hop_s, 0.25, 2.0, f"{section}.hop_s", "seconds")
        _within(self.onset_lead_s, 0, 1.5, f"{section}.onset_lead_s", "seconds")
        _within(self.min_active_fraction, 0, 1, f"{section}.min_active_fraction", open_low=True)


@dataclass(frozen=True)
class HearSettings:
    backend: str = "auto"  # auto | tf | torch | remote
    model_dir: str = ""  # a local copy of the weights; "" = the Hugging Face cache
    revision: str = HEAR_DEFAULT_REVISION
    cache_dir: str = ""  # "" = huggingface_hub's default cache
    precision: str = "fp32"  # fp32 | bf16 | int8
    device: str = "auto"  # auto | cpu | cuda
    url: str = ""  # remote: the embedding server (`crywatch serve-embedder`)
    timeout_s: float = 2.0  # remote: a request slower than this is a fault
    ca_file: str = ""  # remote over https: the CA that signed the server's certificate ("" = the system's)
    fallback_head: str = "models/acoustic-v3"  # remote: typed with this head and its offline embedder meanwhile

    def validate(self, section: str) -> None:
        _check(self.backend in ("auto", "tf", "torch", "remote"), f"{section}.backend",
               "must be auto, tf, torch or remote")
        _check(self.precision in ("fp32", "bf16", "int8"), f"{section}.precision", "must be fp32, bf16 or int8")
        _check(self.device in ("auto", "cpu", "cuda"), f"{section}.device", "must be auto, cpu or cuda")
        _within(self.timeout_s, 0.05, 30, f"{section}.timeout_s", "seconds")
        if self.backend != "remote":
            return
        parts = urlsplit(self.url)
        _check(parts.scheme in ("http", "https") and bool(parts.hostname), f"{section}.url",
               "backend remote needs the server's address, e.g. http://127.0.0.1:8500 (see `crywatch serve-embedder`)")
        _check(parts.scheme == "https" or is_local(f"tcp://{parts.hostname}:0"), f"{section}.url",
               f"{self.url} would send infants' audio across the network unencrypted: use https:// (the server's "
               "[serve] tls_cert and tls_key) or a server on this PC")
        _check(bool(self.fallback_head), f"{section}.fallback_head",
               "backend remote needs a fallback head (e.g. \"models/acoustic-v2\"): cries must still be typed while "
               "the server is down")

    def fallback_head_path(self) -> Path:
        return _project_path(self.fallback_head)


@dataclass(frozen=True)
class ClassifierSettings:
    embedder: str = "acoustic-v2"  # an offline embedder id, or "hear"
    head: str = "models/acoustic-v3"  # relative paths are relative to the project root
    smoothing: float = 0.6  # weight of the past in the exponential smoother, 0 = none
    max_batch: int = 8  # windows embedded together when the embedder falls behind

    def validate(self, section: str) -> None:
        _within(self.smoothing, 0, 1, f"{section}.smoothing", open_high=True)
        _within(self.max_batch, 1, 256, f"{section}.max_batch", "windows")

    def head_path(self) -> Path:
        return _project_path(self.head)


PRIORITIES = ("high", "medium", "low")


@dataclass(frozen=True)
class AlertSettings:
    classes: tuple[str, ...] = ("pain", "neurological")
    # A cry type is decided on a spell's evidence: the mean of its crying windows' log-odds, once it has this
    # many (0 = the head's tuned number), against a threshold (the head's, or `thresholds`).
    min_windows: int = 0
    thresholds: dict[str, float] = field(default_factory=dict)  # overrides the head's
    crying_s: float = 30.0  # a spell's crying time that raises the crying alarm, whatever its type (0 = off)
    escalate_s: float = 300.0  # a spell still going this long after it began: the crying alarm goes high (0 = off)
    high_pitch_s: float = 0.0  # a spell's crying above 1 kHz that raises the high-pitched cry alarm (0 = off)
    priorities: dict[str, str] = field(default_factory=dict)  # per cry type or technical alarm; overrides defaults
    latched: bool = True  # a cry alarm stays until acknowledged, even after the crying stopped
    pause_s: float = 120.0  # "audio paused": a silenced alarm announces again after this long unless acknowledged
    repeat_s: float = 30.0  # an unacknowledged alarm announces again this often
    technical_min_s: float = 120.0  # a technical alarm lasts at least this long
    command: str = ""  # program run on raise, acknowledge and clear, the event as JSON on stdin
    command_timeout_s: float = 10.0

    def validate(self, section: str) -> None:
        _check(bool(self.classes), f"{section}.classes", "must name at least one cry type: an empty list never alerts")
        for name in self.classes:
            _check(len(name) <= LABEL_MAX_LENGTH, f"{section}.classes",
                   f"{name!r} is longer than the log's {LABEL_MAX_LENGTH} characters for a cry type")
        # A window a second: 30 windows is half a minute of crying before staff hear of it.
        _within(self.min_windows, 0, 30, f"{section}.min_windows", "windows", why="0 = the head's tuned number")
        _check(self.crying_s == 0 or 5 <= self.crying_s <= 3600, f"{section}.crying_s",
               f"{self.crying_s:g} is outside the allowed range [5, 3600] seconds (or 0 = off)")
        _check(self.escalate_s == 0 or (self.crying_s > 0 and self.crying_s <= self.escalate_s <= 7200),
               f"{section}.escalate_s", f"{self.escalate_s:g} must be between crying_s ({self.crying_s:g} s) and 7200 "
               "seconds, with the crying alarm on (or 0 = off): only a crying alarm escalates")
        _check(self.high_pitch_s == 0 or 1 <= self.high_pitch_s <= 3600, f"{section}.high_pitch_s",
               f"{self.high_pitch_s:g} is outside the allowed range [1, 3600] seconds (or 0 = off)")
        for name, value in self.thresholds.items():
            _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
                   f"{section}.thresholds.{name}", f"must be a number, got {value!r}")
            _within(value, 0, 1, f"{section}.thresholds.{name}", open_low=True, open_high=True)
        for name, priority in self.priorities.items():
            _check(priority in PRIORITIES, f"{section}.priorities.{name}", f"must be one of {', '.join(PRIORITIES)}")
        _within(self.pause_s, 5, 3600, f"{section}.pause_s", "seconds")
        _within(self.repeat_s, 5, 3600, f"{section}.repeat_s", "seconds")
        _within(self.technical_min_s, 0, 3600, f"{section}.technical_min_s", "seconds")
        _within(self.command_timeout_s, 0, 300, f"{section}.command_timeout_s", "seconds", open_low=True)
        if self.command:
            try:
                program = shlex.split(self.command)[0]
            except (ValueError, IndexError):
                program = ""
            _check(bool(program) and shutil.which(program) is not None, f"{section}.command",
                   f"program {program!r} not found: give a full path to an executable")


@dataclass(frozen=True)
class EpisodeSettings:
    quiet_s: float = 6.0  # an episode closes after this long without a cry frame

    def validate(self, section: str) -> None:
        _within(self.quiet_s, 0.5, 120, f"{section}.quiet_s", "seconds", why="an episode that never closes is never logged")


@dataclass(frozen=True)
class StoreSettings:
    url: str = "sqlite:///crywatch.db"  # relative sqlite paths are relative to the working directory
    log_windows: bool = True  # one row per gated window, for review
    log_embeddings: bool = True  # also each gated window's embedding (numbers, not audio): the report's map, site scoring
    min_free_mb: float = 200.0  # less free space than this beside a SQLite log = technical alarm (0 = off)

    def validate(self, section: str) -> None:
        _check("://" in self.url, f"{section}.url", "must be a SQLAlchemy URL such as sqlite:///crywatch.db")
        _within(self.min_free_mb, 0, 1_000_000, f"{section}.min_free_mb", "MB", why="0 turns the check off")
        _check(":memory:" not in self.url and self.url.rstrip("/") not in ("sqlite:", "sqlite:/"), f"{section}.url",
               "an in-memory database loses the log (and each thread would see its own): use a file")


@dataclass(frozen=True)
class BusSettings:
    endpoint: str = "tcp://127.0.0.1:5557"  # loopback by default: no bedside audio data leaves the PC
    # Acknowledgements (REQ/REP), advertised in heartbeats. ipc://* = a socket of the monitor's own that only the
    # service's user and group can open (monitor/bus/control.py); tcp needs keys: without, any local process could acknowledge.
    control: str = "ipc://*"
    heartbeat_s: float = 1.0
    keys: str = ""  # CURVE keys folder (`crywatch keys DIR`): required to bind beyond loopback

    def validate(self, section: str) -> None:
        for key in ("endpoint", "control"):
            endpoint = getattr(self, key)
            _check(endpoint.startswith(("tcp://", "ipc://", "inproc://")), f"{section}.{key}",
                   "must be a ZeroMQ endpoint such as tcp://127.0.0.1:5557")
            _check(is_local(endpoint) or bool(self.keys), f"{section}.{key}",
                   f"{endpoint} listens beyond this PC: anyone on the network could read the beds' events or forge "
                   "them; set [bus] keys to a folder made by `crywatch keys DIR`, or keep 127.0.0.1")
            _check(has_valid_port(endpoint), f"{section}.{key}", f"{endpoint}: the port must be 1..65535, or * for any free port")
        _check(not self.control.startswith("tcp://") or bool(self.keys), f"{section}.control",
               f"{self.control} without keys lets any process on this PC acknowledge every alarm: keep the default "
               "ipc://* (only the service's group can open it), or set [bus] keys (`crywatch keys DIR`)")
        _within(self.heartbeat_s, 0.1, 2, f"{section}.heartbeat_s", "seconds",
                why="dashboards show NO SIGNAL for a bed not heard from for 3 s")


@dataclass(frozen=True)
class ServiceSettings:
    bed: str = "bed-1"
    stall_s: float = 5.0  # no audio for this long = the microphone is dead: technical alarm, no watchdog ping
    stage_timeout_s: float = 30.0  # a stage making no progress this long is hung: alarm, no watchdog ping
    muted_s: float = 30.0  # only exact zeros from the microphone this long = muted: technical alarm
    max_lag_s: float = 10.0  # a stage this many audio seconds behind the newest: technical alarm, skips to catch up

    def validate(self, section: str) -> None:
        _check(bool(self.bed.strip()), f"{section}.bed", "must not be empty")
        _check(len(self.bed) <= BED_MAX_LENGTH, f"{section}.bed",
               f"{self.bed!r} has {len(self.bed)} characters; the log holds at most {BED_MAX_LENGTH}")
        _within(self.stall_s, 0, 60, f"{section}.stall_s", "seconds", open_low=True)
        _within(self.muted_s, 1, 3600, f"{section}.muted_s", "seconds")
        _within(self.max_lag_s, 1, 120, f"{section}.max_lag_s", "seconds",
                why="how late, in audio seconds, a cry may be judged before audio is skipped to catch up")
        _within(self.stage_timeout_s, 1, 600, f"{section}.stage_timeout_s", "seconds",
                why="longer than the slowest embedder batch")


@dataclass(frozen=True)
class ServeSettings:
    """`crywatch serve-embedder`: one HeAR ([hear] backend torch) for many monitors."""

    host: str = "127.0.0.1"
    port: int = 8500
    max_batch: int = 64  # clips in one forward pass
    queue_delay_ms: float = 5.0  # how long a request may wait for others to share its forward pass
    replicas: int = 1  # model copies (one per GPU)
    tls_cert: str = ""  # PEM certificate and key: required to listen beyond this machine
    tls_key: str = ""

    def validate(self, section: str) -> None:
        _within(self.port, 1, 65535, f"{section}.port")
        _within(self.max_batch, 1, 4096, f"{section}.max_batch", "clips")
        _within(self.queue_delay_ms, 0, 1000, f"{section}.queue_delay_ms", "ms")
        _within(self.replicas, 1, 64, f"{section}.replicas")
        _check(bool(self.tls_cert) == bool(self.tls_key), f"{section}.tls_cert",
               "tls_cert and tls_key go together (PEM files)")
        for key in ("tls_cert", "tls_key"):
            path = getattr(self, key)
            _check(not path or Path(path).expanduser().is_file(), f"{section}.{key}", f"{path} is not a file")
        _check(is_local(f"tcp://{self.host}:0") or bool(self.tls_cert), f"{section}.host",
               f"{self.host} listens beyond this machine: beds' audio would cross the network unencrypted; set "
               "[serve] tls_cert and tls_key, or keep 127.0.0.1")


@dataclass(frozen=True)
class Settings:
    audio: AudioSettings = field(default_factory=AudioSettings)
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    gate: GateSettings = field(default_factory=GateSettings)
    classifier: ClassifierSettings = field(default_factory=ClassifierSettings)
    hear: HearSettings = field(default_factory=HearSettings)
    alerts: AlertSettings = field(default_factory=AlertSettings)
    episodes: EpisodeSettings = field(default_factory=EpisodeSettings)
    store: StoreSettings = field(default_factory=StoreSettings)
    bus: BusSettings = field(default_factory=BusSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    serve: ServeSettings = field(default_factory=ServeSettings)

    def with_overrides(self, **sections: dict[str, Any]) -> "Settings":
        """Command-line overrides, validated like the file: {"audio": {"input": "mic"}}."""
        updated = self
        for section, values in sections.items():
            current = getattr(updated, section)
            clean = {k: v for k, v in values.items() if v is not None}
            if clean:
                merged = _build_section(type(current), {**dataclasses.asdict(current), **clean}, section)
                updated = replace(updated, **{section: merged})
        updated.validate()
        return updated

    def validate(self) -> None:
        """Keys that are each in range but blind the monitor together; the error names both."""
        audio, gate, lag = self.audio, self.gate, self.service.max_lag_s
        # A file at speed 0 is written into the ring only as far as the gate has read, less two windows kept back
        # (monitor/audio/sources.py); the gate holds back a window, half a hop, the detector's look-ahead (0.46 s
        # for the shipped detectors) and its chunk, and needs one more chunk and playback block to go on.
        playback = math.ceil(10 * (3 * WINDOW_SAMPLES / SAMPLE_RATE + gate.hop_s / 2 + LOOKAHEAD_ALLOWANCE_S
                                   + 2 * gate.detector_hop_s + audio.block_ms / 1000)) / 10
        _check(audio.ring_seconds >= playback, "audio.ring_seconds",
               f"{audio.ring_seconds:g} s is too short for gate.hop_s = {gate.hop_s:g} and gate.detector_hop_s = "
               f"{gate.detector_hop_s:g} (with audio.block_ms = {audio.block_ms}): a file played at audio.speed = 0 "
               f"would wait for the gate forever; make it at least {playback:g} s")
        # A stage skips ahead only past max_lag_s: a ring that laps it sooner loses audio that no alarm reports.
        _check(lag + LAG_MARGIN_S <= audio.ring_seconds, "service.max_lag_s",
               f"{lag:g} s needs audio.ring_seconds of at least {lag + LAG_MARGIN_S:g} s (it is {audio.ring_seconds:g}): "
               "the ring would overwrite audio a stage has not judged before the stage counts as behind; keep max_lag_s "
               f"at least {LAG_MARGIN_S:g} s under ring_seconds, or make the ring longer")


# applied by SIGHUP without a restart: thresholds, crying and pitch alarm times, alarm timing and priorities, paging
RELOADABLE_SECTIONS = ("alerts",)


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """Every setting that differs, as "section.key" (a reload reports these)."""
    changed = []
    for section in fields(Settings):
        before, after = dataclasses.asdict(getattr(old, section.name)), dataclasses.asdict(getattr(new, section.name))
        changed += [f"{section.name}.{key}" for key in before if before[key] != after[key]]
    return changed


def reloadable(key: str) -> bool:
    """Whether `key` ("section.key") takes effect on SIGHUP; the others need a restart."""
    return key.split(".", 1)[0] in RELOADABLE_SECTIONS


def check_watchdog(settings: Settings, watchdog_usec: str | None) -> None:
    """Under systemd's watchdog (WATCHDOG_USEC), the service must pet it well inside the limit,
    and notice a dead microphone before systemd would restart it anyway."""
    if not watchdog_usec:
        return
    limit = int(watchdog_usec) / 1e6
    _check(settings.bus.heartbeat_s < limit / 2, "bus.heartbeat_s",
           f"{settings.bus.heartbeat_s} s is not under half the unit's WatchdogSec ({limit:g} s): systemd would kill "
           "a healthy monitor")
    _check(settings.service.stall_s < limit, "service.stall_s",
           f"{settings.service.stall_s} s is not under the unit's WatchdogSec ({limit:g} s)")


def is_local(endpoint: str) -> bool:
    """Whether binding `endpoint` keeps the socket on this PC (loopback TCP, IPC, in-process)."""
    if not endpoint.startswith("tcp://"):
        return True
    host = urlsplit(endpoint).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # *, an interface name or a host name: reachable from the network


def has_valid_port(endpoint: str) -> bool:
    """A tcp:// endpoint's port is 1..65535 or * (ZeroMQ would take 99999 modulo 65536); other transports have none."""
    if not endpoint.startswith("tcp://"):
        return True
    port = endpoint.rsplit(":", 1)[-1]
    return port == "*" or (port.isdigit() and 1 <= int(port) <= 65535)


def _project_path(value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else PROJECT_ROOT / path


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    text = str(annotation)
    if annotation is bool:
        _check(isinstance(value, bool), key, f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        _check(isinstance(value, int) and not isinstance(value, bool), key, f"must be an integer, got {value!r}")
        return value
    if annotation is float:
        _check(isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value), key,
               f"must be a finite number, got {value!r}")
        return float(value)
    if annotation is str:
        _check(isinstance(value, str), key, f"must be a string, got {value!r}")
        return value
    if text.startswith("tuple[str"):
        _check(isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value), key,
               f"must be a list of strings, got {value!r}")
        return tuple(value)
    if text.startswith("dict[str, float]"):
        _check(isinstance(value, dict), key, f"must be a table of numbers, got {value!r}")
        return {str(k): v for k, v in value.items()}
    if text.startswith("dict[str, str]"):
        _check(isinstance(value, dict) and all(isinstance(v, str) for v in value.values()), key,
               f"must be a table of strings, got {value!r}")
        return {str(k): v for k, v in value.items()}
    raise ConfigError(f"config key {key}: unsupported type {annotation}")


# Keys an older CryWatch read: refused with what replaced them, so an upgraded unit's config says what to change.
REMOVED_KEYS = {
    "alerts.raise_windows": "removed: a cry type is now decided on the whole spell's evidence (see [alerts] min_windows)",
    "alerts.clear_windows": "removed: a cry alarm's condition now ends with its crying spell",
}


def _build_section(cls: type, values: dict[str, Any], section: str) -> Any:
    _check(isinstance(values, dict), section, "must be a table ([section])")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in values:
        _check(f"{section}.{key}" not in REMOVED_KEYS, f"{section}.{key}", REMOVED_KEYS.get(f"{section}.{key}", ""))
        _check(key in known, f"{section}.{key}", f"unknown key; known keys: {', '.join(sorted(known))}")
    built = cls(**{k: _coerce(v, hints[k], f"{section}.{k}") for k, v in values.items()})
    built.validate(section)
    return built


def settings_from_dict(data: dict[str, Any]) -> Settings:
    hints = get_type_hints(Settings)
    known = {f.name for f in fields(Settings)}
    sections = {}
    for name, values in data.items():
        _check(name in known, name, f"unknown section; known sections: {', '.join(sorted(known))}")
        sections[name] = _build_section(hints[name], values, name)
    for name in known - sections.keys():
        sections[name] = _build_section(hints[name], {}, name)
    settings = Settings(**sections)
    settings.validate()
    return settings


def load_settings(path: str | Path | None = None) -> Settings:
    """Read config.toml (or PATH). A missing explicit file is an error; a missing default is not."""
    if path is None:
        if not DEFAULT_CONFIG.exists():
            return settings_from_dict({})
        path = DEFAULT_CONFIG
    path = Path(path)
    try:
        if not path.is_file():
            raise ConfigError(f"config file {path} not found: pass --config with an existing file")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:  # e.g. not readable by the service's user: a setup error like any other
        raise ConfigError(f"config file {path} cannot be read ({exc.strerror or exc}): give the user running "
                          f"crywatch read access to it (and to its folder)") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
    return settings_from_dict(data)
