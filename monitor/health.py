"""The live service's health: what its supervisor checks ten times a second, as technical-alarm causes.

The service hands `HealthSupervisor.check` what it can observe (the ring's progress, the stages' beats and
lags, the embedding server's state) and raises every `Fault` it yields as a technical alarm: a dead microphone
must never look like a quiet room, nor NaN samples like silence, nor a hung or lagging stage like a calm bed.
A lost microphone is reopened from here, with backoff. The supervisor keeps its own memory between checks and
reads no clock: the caller says when `now` is. systemd hears from `sd_notify`, and its watchdog only while
`keeps_up` (audio flows and every stage keeps up).
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from monitor.audio import AudioError
from monitor.config import ServiceSettings
from monitor.messages import SAMPLE_RATE, seconds

_LOGGER = logging.getLogger("monitor.service")  # the service's lines in the journal, as they were before they moved here
BAD_AUDIO_CLEARS_S = 5.0  # no NaN/Inf samples for this long: the bad-audio alarm's cause has gone
MIC_RETRY_MAX_S = 30.0
DISK_CHECK_S = 10.0


def sd_notify(state: str) -> None:
    """systemd's notify protocol (READY=1, WATCHDOG=1, STATUS=...); a no-op outside systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)  # a systemd that does not read must not stall the supervisor
        try:
            sock.sendto(state.encode(), address)
        except BlockingIOError:
            pass  # its queue is full: this ping is lost, the next one is sent in a heartbeat


def stage_lags(end: int, decided_to: int, held: Sequence[tuple[str, tuple[int | None, ...]]]) -> dict[str, int]:
    """How far behind the newest audio (`end`) each stage is, in samples: the oldest audio it still has to
    judge, or, with nothing in hand, what it has been given so far (its upstream's lag). The gate's decisions
    reach `decided_to`; `held` names the stages after it in pipeline order, each with the starts of the audio it
    holds (None for nothing)."""
    gate = max(0, end - decided_to)
    lags = {"gate": gate}
    upstream = gate
    for name, starts in held:
        upstream = lags[name] = max([upstream] + [end - start for start in starts if start is not None])
    return lags


@dataclass(frozen=True)
class Fault:
    """A technical alarm's cause, for `AlarmManager.fault`: it started (`active`) or ended."""

    label: str
    active: bool
    detail: str = ""


@dataclass(frozen=True)
class StageBeat:
    name: str
    alive: bool
    last_beat: float  # when the stage last said it was making progress


@dataclass(frozen=True)
class Observed:
    """What the supervisor sees of the service at one check."""

    end: int  # the ring's end: audio arrived so far
    last_sound: int  # the end of the newest write holding a non-zero sample
    nonfinite: int  # NaN/Inf samples written so far
    live: bool  # a microphone (files and scenarios end, and are never silent, muted or lost)
    lost: bool  # a microphone that stopped delivering (unplugged, failed)
    source: str  # the input's description
    stages: tuple[StageBeat, ...]
    lags: dict[str, int]  # samples each stage is behind the newest audio (asked only where `max_lag` is set)
    skipped_s: float  # audio skipped so far to catch up
    server_fault: str | None  # the embedding server's, as its failover reports it
    laps: int = 0  # times the ring overwrote audio before the gate had read it (monitor.detect.Gate.laps)
    overwritten: bool = False  # the ring's oldest sample is past what the gate has read: it is being lapped now


@dataclass
class _Watch:
    """What the supervisor remembers between its checks."""

    last_end: int  # ring end at the last check that saw new audio
    last_progress: float
    stalled: bool = False
    nonfinite: int = 0  # NaN/Inf samples seen so far
    bad_since: float | None = None  # when they last grew
    hung: set[str] = field(default_factory=set)
    muted: bool = False  # only digital silence arrives
    lost_since: float | None = None  # the microphone is gone since then
    retry_at: float = 0.0
    retry_delay: float = 1.0
    disk_checked: float = float("-inf")
    disk_low: bool = False
    server_fault: str | None = None  # the embedding server's, as last reported
    behind: bool = False  # some stage is more than max_lag behind the newest audio, or the ring lapped the gate
    laps: int = 0  # the gate's laps seen so far


class HealthSupervisor:
    """Turns what the service observes into technical-alarm causes, remembering what it already reported.

    `release` closes a lost microphone's stream; `reopen` opens and starts the microphone again and returns its
    description, raising AudioError while it is still gone. `max_lag` (samples) is None for a paced playback,
    which waits for the stages: being behind is how it runs, not a fault.
    """

    def __init__(self, settings: ServiceSettings, max_lag: int | None, log_folder: Path | None, min_free_mb: float,
                 release: Callable[[], None], reopen: Callable[[], str], end: int, now: float,
                 free_bytes: Callable[[Path], int] = lambda folder: shutil.disk_usage(folder).free):
        self.settings = settings
        self.max_lag = max_lag
        self._log_folder, self._min_free_mb = log_folder, min_free_mb  # a server's disk is its own
        self._release, self._reopen, self._free_bytes = release, reopen, free_bytes
        self._watch = _Watch(end, now)

    def check(self, seen: Observed, now: float) -> Iterator[Fault]:
        """Each cause as it is found (a lost microphone's before the reopening, which can take a while)."""
        if seen.lost:  # e.g. the USB microphone was unplugged
            yield from self._recover_microphone(seen, now)
        yield from self._check_audio(seen, now)
        yield from self._check_stages(seen, now)
        yield from self._check_lag(seen)
        yield from self._check_disk(now)
        yield from self._check_server(seen)

    @property
    def problems(self) -> list[str]:
        watch = self._watch
        return (["microphone lost"] if watch.lost_since else []) + (["audio stalled"] if watch.stalled else []) \
            + (["microphone muted"] if watch.muted else []) + (["embedding server down"] if watch.server_fault else []) \
            + (["bad audio"] if watch.bad_since else []) + [f"{name} hung" for name in sorted(watch.hung)] \
            + (["behind the audio"] if watch.behind else [])

    @property
    def keeps_up(self) -> bool:
        """Audio flows and every stage keeps up: systemd's watchdog is petted (it restarts what stops petting it)."""
        watch = self._watch
        return not watch.stalled and not watch.hung and not watch.behind

    def _recover_microphone(self, seen: Observed, now: float) -> Iterator[Fault]:
        """The microphone is gone: say so once, then open it again with backoff (1, 2, 4 ... 30 s)."""
        watch = self._watch
        if watch.lost_since is None:
            watch.lost_since, watch.retry_at, watch.retry_delay = now, now, 1.0
            self._release()  # its stream must be closed before PortAudio is re-initialised
            _LOGGER.error("%s stopped delivering audio (device removed or failed); opening it again", seen.source)
            yield Fault("microphone_lost", True, seen.source)
        if now < watch.retry_at:
            return
        try:
            description = self._reopen()
        except AudioError as exc:
            watch.retry_delay = min(2 * watch.retry_delay, MIC_RETRY_MAX_S)
            watch.retry_at = now + watch.retry_delay
            _LOGGER.warning("microphone still unavailable (%s); next try in %.0f s", exc, watch.retry_delay)
            return
        _LOGGER.warning("%s is back after %.1f s", description, now - watch.lost_since)
        watch.lost_since, watch.last_end, watch.last_progress = None, seen.end, now
        yield Fault("microphone_lost", False)

    def _check_audio(self, seen: Observed, now: float) -> Iterator[Fault]:
        """A dead microphone must never look like a quiet room, nor NaN samples like silence."""
        watch = self._watch
        if seen.end != watch.last_end:
            watch.last_end, watch.last_progress = seen.end, now
            if watch.stalled:
                watch.stalled = False
                yield Fault("microphone_silent", False)
        elif (seen.live and watch.lost_since is None and not watch.stalled
              and now - watch.last_progress > self.settings.stall_s):
            watch.stalled = True
            yield Fault("microphone_silent", True, f"nothing for {now - watch.last_progress:.1f} s")
        muted = seen.live and seen.end - seen.last_sound > self.settings.muted_s * SAMPLE_RATE
        if muted != watch.muted:
            watch.muted = muted
            yield Fault("microphone_muted", muted, f"only zeros for {seconds(seen.end - seen.last_sound):.0f} s")
        if seen.nonfinite != watch.nonfinite:
            if watch.bad_since is None:
                yield Fault("bad_audio", True, f"{seen.nonfinite - watch.nonfinite} samples")
            watch.nonfinite, watch.bad_since = seen.nonfinite, now
        elif watch.bad_since is not None and now - watch.bad_since > BAD_AUDIO_CLEARS_S:
            watch.bad_since = None
            yield Fault("bad_audio", False)

    def _check_stages(self, seen: Observed, now: float) -> Iterator[Fault]:
        """Every stage beats at least twice a second when idle: one silent for stage_timeout_s is hung."""
        watch, limit = self._watch, self.settings.stage_timeout_s
        for stage in seen.stages:
            hung = stage.alive and now - stage.last_beat > limit
            if hung and stage.name not in watch.hung:
                watch.hung.add(stage.name)
                detail = f"{stage.name} made no progress for {now - stage.last_beat:.0f} s"
                _LOGGER.error("stage hung: %s", detail)
                yield Fault("stage_hung", True, detail)
            elif not hung and stage.name in watch.hung:
                watch.hung.discard(stage.name)
                if not watch.hung:
                    yield Fault("stage_hung", False)

    def _check_lag(self, seen: Observed) -> Iterator[Fault]:
        """A stage behind the newest audio hears cries late: alarm past max_lag_s, clear under half of it
        (the stage skips ahead meanwhile, so it catches up even when the machine stays loaded). Audio the ring
        overwrote before the gate read it was never judged, whatever the lag says: that is behind too."""
        watch, limit = self._watch, self.max_lag
        lapped = seen.overwritten or seen.laps > watch.laps
        watch.laps = seen.laps
        name, worst = max(seen.lags.items(), key=lambda item: item[1], default=("gate", 0))
        behind = lapped or (limit is not None and worst > (limit // 2 if watch.behind else limit))
        if behind == watch.behind:
            return
        watch.behind = behind
        if behind:
            detail = (f"the ring overwrote audio the gate had not read ({seconds(worst):.1f} s behind)" if lapped
                      else f"{name} {seconds(worst):.1f} s behind the newest audio")
            _LOGGER.error("monitor behind: %s; skipping audio to catch up", detail)
            yield Fault("monitor_behind", True, detail)
        else:
            _LOGGER.warning("monitor caught up (%.1f s of audio skipped so far)", seen.skipped_s)
            yield Fault("monitor_behind", False)

    def _check_disk(self, now: float) -> Iterator[Fault]:
        """Warn before the log's disk fills (the spool then keeps alerting going, but only so long)."""
        watch, folder, limit = self._watch, self._log_folder, self._min_free_mb
        if folder is None or not limit or now < watch.disk_checked + DISK_CHECK_S:
            return
        watch.disk_checked = now
        try:
            free_mb = self._free_bytes(folder) / 1e6
        except OSError:
            return  # the log's own writes report an unusable folder
        low = free_mb < limit
        if low != watch.disk_low:
            watch.disk_low = low
            yield Fault("disk_nearly_full", low, f"{free_mb:.0f} MB free beside {folder}")

    def _check_server(self, seen: Observed) -> Iterator[Fault]:
        """The embedding server failed or came back (the failover has already switched embedders)."""
        fault = seen.server_fault
        if (fault is None) != (self._watch.server_fault is None):
            self._watch.server_fault = fault
            yield Fault("embedding_server_down", fault is not None, fault or "")
