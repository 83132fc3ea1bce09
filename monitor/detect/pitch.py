"""Fundamental frequency (F0) of infant cries, for the crying frames the detector found.

Why: a persistent high-pitched cry ("hyperphonation", F0 above about 1 kHz) is the acoustic sign nurses
score as CNS irritability (e.g. Finnegan's neonatal abstinence items). Each crying spell gets its median
F0 and the share of its voiced frames above HYPERPHONATION_HZ. This measures an acoustic sign, not a
diagnosis.

Method (docs/pitch.md has the validation against Praat): a YIN-style detector computed for a whole batch
of frames at once. Each 40 ms frame is Hann-windowed; one batched real FFT gives its power spectrum,
weighted to drop hum and rumble below 100 Hz; an inverse FFT of twice the length gives the normalised
autocorrelation R at half-sample lags (Boersma's window correction), from which the cumulative-mean-
normalised difference d' = CMNDF(1 - R) follows. The period is the *shortest* lag whose dip (refined by
parabolic interpolation) is within a margin of the deepest dip: the margin absorbs noise, which makes the
dips at T, 2T and 3T of a steady tone equally deep give or take 10-25 %, so taking the deepest would halve
a noisy 1.5 kHz cry; taking the first dip under a fixed threshold instead would double a cry with a strong
second harmonic. A frame is voiced when its dip is deep enough and it is not quiet relative to the batch.
A one-frame jump away from its neighbours is put back when the frame had a candidate at their pitch
too. Cries move fast, so nothing longer-range is smoothed: a real jump into hyperphonation must not be
flattened (Praat's octave-jump cost does that, docs/pitch.md).

Cost: ~0.02 ms of CPU per 20 ms frame in batches of 50 (0.1 % of a core while crying), but ~0.4 ms for a
lone frame: call it once per second of crying or per spell.

Self-contained on purpose (numpy, scipy and the sample rate only): the gate calls it on crying frames.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import sliding_window_view

from monitor.messages import SAMPLE_RATE

F0_MIN_HZ = 150.0
F0_MAX_HZ = 2000.0
HYPERPHONATION_HZ = 1000.0

_UPSAMPLE = 2  # autocorrelation at half-sample lags: a 1.6 kHz period is only 10 samples long


@dataclass(frozen=True)
class PitchSummary:
    """One crying spell's pitch: NaN figures when it has no voiced frame."""

    frames: int             # analysis frames in the spell
    voiced: int             # of which voiced
    median_hz: float        # median F0 of the voiced frames
    hyperphonation: float   # share of the voiced frames above HYPERPHONATION_HZ


def summarise(f0: np.ndarray, threshold_hz: float = HYPERPHONATION_HZ) -> PitchSummary:
    """Median F0 and hyperphonation share of one spell's frames (NaN = unvoiced)."""
    f0 = np.asarray(f0, dtype=np.float64)
    voiced = f0[~np.isnan(f0)]
    if len(voiced) == 0:
        return PitchSummary(len(f0), 0, float("nan"), float("nan"))
    return PitchSummary(len(f0), len(voiced), float(np.median(voiced)), float(np.mean(voiced > threshold_hz)))


class PitchTracker:
    """Batched F0 tracker; every parameter below was chosen by measurement (docs/pitch.md, bench/bench_pitch.py).

    frame_length: analysis frame in samples (640 = 40 ms: six periods of the 150 Hz floor; 30 ms frames
        had finer errors on real cries but more gross ones, 1.7 % against 0.8 % of generated frames).
    voicing_threshold: largest CMNDF dip of a voiced frame (0.35: voicing agrees with Praat's on ~90 % of
        real cry frames; pure white, pink and phone-band noise never gets there).
    pick_margin, pick_floor: a dip counts as a period candidate when it is within
        max(pick_floor, pick_margin * deepest) of the deepest dip; the shortest candidate wins. A smaller
        margin halves noisy high cries, a larger one doubles more; the floor covers clean frames, whose
        dips are all near 0 (at 0.02 a cry with a second harmonic 20 dB over its fundamental doubled).
    silence_db: frames whose 100 Hz+ energy is this far below the batch's loud frames (95th percentile)
        are unvoiced, like Praat's silence threshold.
    """

    def __init__(self, frame_length: int = 640, f0_min: float = F0_MIN_HZ, f0_max: float = F0_MAX_HZ, *,
                 voicing_threshold: float = 0.35, pick_margin: float = 0.4, pick_floor: float = 0.01,
                 silence_db: float = -35.0, highpass_hz: float = 100.0, sample_rate: int = SAMPLE_RATE) -> None:
        if not 0 < f0_min < f0_max <= sample_rate / 4:
            raise ValueError(f"need 0 < f0_min < f0_max <= {sample_rate / 4:g} Hz, got {f0_min:g}, {f0_max:g}")
        max_period = int(np.ceil(sample_rate / f0_min))
        if frame_length < 2 * max_period:
            raise ValueError(f"frame_length {frame_length} is shorter than two periods of f0_min ({2 * max_period})")
        self.frame_length = frame_length
        self.f0_min, self.f0_max = f0_min, f0_max
        self.sample_rate = sample_rate
        self.voicing_threshold = voicing_threshold
        self.pick_margin, self.pick_floor = pick_margin, pick_floor
        self.silence_db = silence_db
        # Lags are counted on the half-sample grid from here on.
        self._lo = int(np.floor(_UPSAMPLE * sample_rate / f0_max))
        self._hi = int(np.ceil(_UPSAMPLE * sample_rate / f0_min))
        self._top = self._hi + 2
        self._nfft = scipy.fft.next_fast_len(frame_length + max_period + 1, real=True)
        freqs = np.fft.rfftfreq(self._nfft, 1 / sample_rate)
        ramp = np.clip((freqs - highpass_hz / 2) / (highpass_hz / 2), 0.0, 1.0)
        self._gain = (np.sin(np.pi / 2 * ramp) ** 2).astype(np.float32)
        self._window = np.hanning(frame_length + 2)[1:-1].astype(np.float32)
        window_acf = scipy.fft.irfft(np.abs(scipy.fft.rfft(self._window.astype(np.float64), self._nfft)) ** 2,
                                     _UPSAMPLE * self._nfft)[: self._top]
        self._window_acf = (window_acf / window_acf[0]).astype(np.float32)
        self._lags = np.arange(self._top, dtype=np.float32)

    def track(self, samples: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """F0 in Hz (float32) of the frame centred at each index of `centres` into `samples`; NaN where the
        frame is unvoiced or does not fit inside `samples`. Pass a spell's frames in one call: voicing
        compares each frame with the batch's loud frames, and the octave-blip repair looks at neighbours."""
        samples = np.asarray(samples, dtype=np.float32)
        centres = np.asarray(centres, dtype=np.int64).reshape(-1)
        out = np.full(len(centres), np.nan, dtype=np.float32)
        starts = centres - self.frame_length // 2
        fits = (starts >= 0) & (starts + self.frame_length <= len(samples))
        if not fits.any():
            return out
        frames = sliding_window_view(samples, self.frame_length)[starts[fits]]
        f0, dip, depth, offset = self._frames_f0(frames)
        out[fits] = self._repair_blips(f0, dip, depth, offset, centres[fits])
        return out

    def track_signal(self, samples: np.ndarray, hop: int = 320) -> tuple[np.ndarray, np.ndarray]:
        """A whole recording: frames centred at hop/2 + k*hop (the detector's 20 ms frames); (times in s, F0)."""
        count = max(0, (len(samples) - hop // 2 - 1) // hop + 1)
        centres = hop // 2 + hop * np.arange(count)
        return centres / self.sample_rate, self.track(samples, centres)

    def _cmndf(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(CMNDF on the half-sample lag grid, band energy) of each frame."""
        x = (frames - frames.mean(axis=1, keepdims=True)) * self._window
        spectrum = scipy.fft.rfft(x, self._nfft, axis=1)
        power = spectrum.real ** 2 + spectrum.imag ** 2
        power *= self._gain
        acf = scipy.fft.irfft(power, _UPSAMPLE * self._nfft, axis=1)[:, : self._top]
        energy = acf[:, 0].copy()
        scale = np.where(energy > 0, 1.0 / np.where(energy > 0, energy, 1.0), 0.0).astype(np.float32)
        diff = 1.0 - acf * scale[:, None] / self._window_acf
        np.maximum(diff, 0.0, out=diff)
        diff[:, 0] = 0.0
        running = np.cumsum(diff[:, 1:], axis=1)
        cmndf = np.ones_like(diff)
        cmndf[:, 1:] = diff[:, 1:] * self._lags[1:] / np.maximum(running, 1e-12)
        return cmndf, energy

    def _frames_f0(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per frame: F0 (NaN = unvoiced), the depth of its chosen dip, and per lag the depth of each dip
        (inf elsewhere) and its sub-lag offset, which the blip repair looks up."""
        rows = np.arange(len(frames))
        cmndf, energy = self._cmndf(frames)
        lo, hi = self._lo, self._hi
        mid = cmndf[:, lo: hi + 1]
        left, right = cmndf[:, lo - 1: hi], cmndf[:, lo + 1: hi + 2]
        is_dip = (mid <= left) & (mid < right)
        curvature = left - 2 * mid + right
        fit = is_dip & (curvature > 0)
        safe = np.where(fit, curvature, 1.0)
        depth = np.where(fit, np.maximum(mid - (left - right) ** 2 / (8 * safe), 0.0), np.where(is_dip, mid, np.inf))
        offset = np.where(fit, np.clip(0.5 * (left - right) / safe, -0.5, 0.5), 0.0)
        deepest = depth.min(axis=1)
        limit = deepest + np.maximum(self.pick_floor, self.pick_margin * deepest)
        chosen = (depth <= limit[:, None]).argmax(axis=1)  # the shortest lag among the candidates
        dip = depth[rows, chosen]
        f0 = _UPSAMPLE * self.sample_rate / (lo + chosen + offset[rows, chosen])
        loud = energy > 10 ** (self.silence_db / 10) * np.percentile(energy, 95)
        voiced = np.isfinite(dip) & loud & (dip < self.voicing_threshold) & (f0 >= self.f0_min) & (f0 <= self.f0_max)
        return np.where(voiced, f0, np.nan).astype(np.float32), dip, depth, offset

    def _repair_blips(self, f0: np.ndarray, dip: np.ndarray, depth: np.ndarray, offset: np.ndarray,
                      centres: np.ndarray) -> np.ndarray:
        """A voiced frame more than 0.6 octave away from its adjacent voiced neighbours (both, agreeing
        within a quarter octave; or the one it has, at either end of a voiced run) takes its dip at their
        pitch when that dip was a candidate too (within the pick margin of its own). One frame only: a
        run of frames an octave up is a real jump (into hyperphonation, say), not a blip. On the real
        cries of docs/pitch.md this cut the frames more than 20 % off Praat from 8.2 % to 7.4 %."""
        n = len(f0)
        if n < 3:
            return f0
        lo = self._lo
        log_f0 = np.log2(f0.astype(np.float64))
        adjacent = np.diff(centres) <= self.frame_length // 2
        before = np.full(n, np.nan)
        after = np.full(n, np.nan)
        before[1:] = np.where(adjacent, log_f0[:-1], np.nan)
        after[:-1] = np.where(adjacent, log_f0[1:], np.nan)
        context = 0.5 * (before + after)
        blip = np.abs(before - after) < 0.25
        lone = np.isnan(before) != np.isnan(after)  # at either end of a voiced run: its one voiced neighbour
        context[lone] = np.where(np.isnan(before[lone]), after[lone], before[lone])
        blip |= lone
        blip[blip] = np.abs(log_f0[blip] - context[blip]) > 0.6  # NaN (unvoiced) compares False
        if not blip.any():
            return f0
        frames = np.where(blip)[0]
        target = _UPSAMPLE * self.sample_rate / 2 ** context[frames] - lo  # the neighbours' lag, as an index
        near = np.rint(target).astype(np.int64)[:, None] + np.arange(-3, 4)
        inside = (near >= 0) & (near < depth.shape[1])
        near = np.clip(near, 0, depth.shape[1] - 1)
        depths = np.where(inside, depth[frames[:, None], near], np.inf)
        best = depths.argmin(axis=1)
        at = near[np.arange(len(frames)), best]
        own = dip[frames]
        strong = depths[np.arange(len(frames)), best] <= own + np.maximum(self.pick_floor, self.pick_margin * own)
        out = f0.copy()
        out[frames[strong]] = _UPSAMPLE * self.sample_rate / (lo + at[strong] + offset[frames[strong], at[strong]])
        return out
