"""Cry-activity detection: frame-level evidence → one Window decision per hop.

A frame is cry-active when webrtcvad hears voice AND the voice is periodic with its F0 in the
infant range (adult speech sits at 85–255 Hz, cries at roughly 250–800 Hz) AND it stands above
the tracked noise floor. A 2 s window passes the gate when enough of its frames are active.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import webrtcvad

from monitor.audio import RingBuffer
from monitor.config import GateSettings
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES, Window

_SILENCE_DB = -120.0
# The floor follows quiet quickly and loud slowly, so a long cry does not become "noise".
_FLOOR_FALL = 0.2
_FLOOR_RISE_DB_PER_S = 0.5
# Lowest pitch considered when looking for the dominant period: well below adult male voices,
# so speech finds its own period there instead of a harmonic inside the infant range.
_LOWEST_PITCH_HZ = 70.0
_HISTORY_S = 60


@dataclass(frozen=True)
class FrameEvidence:
    level_db: np.ndarray  # per-frame energy, dBFS
    voice: np.ndarray  # webrtcvad
    infant_pitch: np.ndarray  # periodic, dominant F0 inside [f0_min, f0_max]
    active: np.ndarray  # all of the above and above the noise floor


class FrameAnalyzer:
    """Stateful (noise floor) per-frame cry evidence."""

    def __init__(self, settings: GateSettings):
        self.settings = settings
        self.frame = SAMPLE_RATE * settings.frame_ms // 1000
        self._vad = webrtcvad.Vad(settings.vad_aggressiveness)
        self._floor_db: float | None = None
        self._rise_per_frame = _FLOOR_RISE_DB_PER_S * settings.frame_ms / 1000
        self._min_lag = int(SAMPLE_RATE / settings.f0_max_hz)
        self._max_infant_lag = int(np.ceil(SAMPLE_RATE / settings.f0_min_hz))
        self._max_lag = min(self.frame - 1, int(SAMPLE_RATE / _LOWEST_PITCH_HZ))
        self._nfft = 1 << int(np.ceil(np.log2(2 * self.frame)))

    def analyze(self, samples: np.ndarray) -> FrameEvidence:
        """Evidence for len(samples) // frame whole frames."""
        n = len(samples) // self.frame
        frames = samples[: n * self.frame].reshape(n, self.frame)
        power = np.mean(frames.astype(np.float64) ** 2, axis=1)
        level_db = np.where(power > 0, 10 * np.log10(np.maximum(power, 1e-30)), _SILENCE_DB)
        infant_pitch = self._infant_pitch(frames)
        pcm = (np.clip(frames, -1, 1) * 32767).astype("<i2")
        voice = np.fromiter((self._vad.is_speech(f.tobytes(), SAMPLE_RATE) for f in pcm), bool, n)
        above_floor = np.empty(n, bool)
        s = self.settings
        for i, db in enumerate(level_db):
            floor = db if self._floor_db is None else self._floor_db
            floor = floor + _FLOOR_FALL * (db - floor) if db < floor else floor + self._rise_per_frame
            self._floor_db = floor
            above_floor[i] = db - floor >= s.min_snr_db and db >= s.min_level_dbfs
        return FrameEvidence(level_db, voice, infant_pitch, voice & infant_pitch & above_floor)

    def _infant_pitch(self, frames: np.ndarray) -> np.ndarray:
        centred = frames - frames.mean(axis=1, keepdims=True)
        spectrum = np.fft.rfft(centred, self._nfft, axis=1)
        acf = np.fft.irfft(np.abs(spectrum) ** 2, self._nfft, axis=1)[:, : self._max_lag + 1]
        energy = acf[:, :1]
        # Unbiased normalisation, so long lags (low pitches) are not penalised for overlapping less.
        overlap = (self.frame - np.arange(self._max_lag + 1)) / self.frame
        norm = np.where(energy > 1e-12, acf / np.maximum(energy, 1e-12) / overlap, 0.0)
        search = norm[:, self._min_lag :]
        best_lag = self._min_lag + np.argmax(search, axis=1)
        strength = search.max(axis=1)
        return (strength >= self.settings.min_voicing) & (best_lag <= self._max_infant_lag)


class Gate:
    """Turns the ring buffer into one Window per hop; only windows with enough cry activity carry audio."""

    def __init__(self, settings: GateSettings):
        self.settings = settings
        self.hop = int(round(settings.hop_s * SAMPLE_RATE))
        self._analyzer = FrameAnalyzer(settings)
        self.frame = self._analyzer.frame
        self._frames_done = 0
        # Frame decisions kept for windows still to come; must outlast the largest block fed at once.
        history = _HISTORY_S * SAMPLE_RATE // self.frame
        self._active: deque[bool] = deque(maxlen=history)
        self._power: deque[float] = deque(maxlen=history)
        self.next_start = 0
        self.dropped_windows = 0  # windows skipped because the reader fell behind the ring

    @property
    def processed(self) -> int:
        """Absolute index up to which samples have been analysed."""
        return self._frames_done * self.frame

    @property
    def needed_from(self) -> int:
        """Oldest sample the gate may still read: a writer that can wait must not overwrite it."""
        return min(self.next_start, self.processed)

    def advance(self, ring: RingBuffer) -> list[Window]:
        self._analyze_new_frames(ring)
        windows = []
        while self.next_start + WINDOW_SAMPLES <= self.processed:
            window = self._window_at(ring, self.next_start, self.next_start + WINDOW_SAMPLES)
            if window is not None:
                windows.append(window)
            self.next_start += self.hop
        return windows

    def flush(self, ring: RingBuffer) -> list[Window]:
        """At the end of a recording: one last window over any tail no window has covered yet."""
        windows = self.advance(ring)
        covered = self.next_start - self.hop + WINDOW_SAMPLES if self.next_start else 0
        if self.processed > covered:
            window = self._window_at(ring, max(0, self.processed - WINDOW_SAMPLES), self.processed)
            if window is not None:
                windows.append(window)
        return windows

    def windows_over(self, samples: np.ndarray, block: int = 8 * SAMPLE_RATE) -> Iterator[list[Window]]:
        """Feeds a whole recording through a private ring block by block, as a source would."""
        assert block + WINDOW_SAMPLES <= _HISTORY_S * SAMPLE_RATE
        ring = RingBuffer(block + 2 * WINDOW_SAMPLES)
        for start in range(0, len(samples), block):
            ring.write(samples[start : start + block])
            yield self.advance(ring)
        yield self.flush(ring)

    def _analyze_new_frames(self, ring: RingBuffer) -> None:
        if self._frames_done * self.frame < ring.oldest:  # fell behind: resume at the oldest frame
            skipped = -(-ring.oldest // self.frame)
            self._active.extend([False] * min(skipped - self._frames_done, self._active.maxlen))
            self._power.extend([0.0] * min(skipped - self._frames_done, self._power.maxlen))
            self._frames_done = skipped
        count = (ring.end - self.processed) // self.frame
        if count <= 0:
            return
        try:
            samples = ring.read(self.processed, count * self.frame)
        except IndexError:  # lapped while reading: the next call resumes at the oldest frame
            return
        evidence = self._analyzer.analyze(samples)
        self._active.extend(evidence.active.tolist())
        self._power.extend((10 ** (evidence.level_db / 10)).tolist())
        self._frames_done += count

    def _window_at(self, ring: RingBuffer, start: int, end: int) -> Window | None:
        """Decision for [start, end); `end - start` < 2 s only for a recording shorter than that."""
        first = -(-start // self.frame)
        last = end // self.frame  # exclusive
        offset = self._frames_done - len(self._active)
        if first < offset or start < ring.oldest:
            self.dropped_windows += 1
            return None
        active = list(self._active)[first - offset : last - offset]
        power = list(self._power)[first - offset : last - offset]
        fraction = float(np.mean(active)) if active else 0.0
        mean_power = float(np.mean(power)) if power else 0.0
        level = 10 * np.log10(mean_power) if mean_power > 0 else _SILENCE_DB
        if fraction < self.settings.min_active_fraction:
            return Window(start, fraction, round(level, 1))
        try:
            samples = ring.read(start, end - start)
        except IndexError:  # the microphone lapped a reader that fell too far behind
            self.dropped_windows += 1
            return None
        if len(samples) < WINDOW_SAMPLES:
            samples = np.pad(samples, (0, WINDOW_SAMPLES - len(samples)))
        return Window(start, fraction, round(level, 1), samples)


def gate_recording(samples: np.ndarray, settings: GateSettings) -> list[Window]:
    """Every hop's decision over a whole recording, made exactly as the live gate makes them."""
    return [w for batch in Gate(settings).windows_over(samples) for w in batch]
