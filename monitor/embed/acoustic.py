"""The offline embedder: hand-crafted cry acoustics, runs anywhere in a few ms per window.

Everything is computed below 4 kHz and made gain-invariant, because half of the public cry
data is 8 kHz phone audio: a feature that sees bandwidth or level learns the corpus, not the cry.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import get_window

from monitor.embed.base import check_windows
from monitor.messages import SAMPLE_RATE

_N_FFT = 512
_HOP = 160  # 10 ms
_N_MELS = 40
_F_LO, _F_HI = 100.0, 4000.0
_F0_LO, _F0_HI = 150.0, 1000.0
_PITCH_FRAME = 480  # 30 ms: two periods of the lowest pitch searched
_ENVELOPE_BANDS_HZ = ((0.5, 1.5), (1.5, 3.0), (3.0, 6.0), (6.0, 12.0))


def _hz_to_mel(f: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)


def _mel_filterbank() -> np.ndarray:
    """Triangular HTK-mel filters over the rfft bins, (n_bins, n_mels)."""
    freqs = np.fft.rfftfreq(_N_FFT, 1 / SAMPLE_RATE)
    edges = 700.0 * (10 ** (np.linspace(_hz_to_mel(_F_LO), _hz_to_mel(_F_HI), _N_MELS + 2) / 2595.0) - 1)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (freqs[None, :] - lower) / (centre - lower)
    falling = (upper - freqs[None, :]) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).T.astype(np.float32)


class AcousticEmbedder:
    """Log-mel statistics, pitch and voicing, spectral shape and cry rhythm: 141 numbers per window."""

    id = "acoustic-v1"

    def __init__(self) -> None:
        self._mel = _mel_filterbank()
        self._window = get_window("hann", _N_FFT, fftbins=True).astype(np.float32)
        freqs = np.fft.rfftfreq(_N_FFT, 1 / SAMPLE_RATE)
        self._band = (freqs >= _F_LO) & (freqs <= _F_HI)
        self._band_freqs = freqs[self._band].astype(np.float32)
        self._low_half = self._band_freqs < 2000
        self._min_lag = int(SAMPLE_RATE / _F0_HI)
        self._max_lag = int(SAMPLE_RATE / _F0_LO)
        self.dim = len(self._features(np.zeros(32_000, np.float32) + 1e-3 * np.sin(np.arange(32_000))))

    def embed(self, windows: np.ndarray) -> np.ndarray:
        windows = check_windows(windows)
        return np.stack([self._features(w) for w in windows]).astype(np.float32)

    def _features(self, x: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(x)))
        x = x / peak if peak > 0 else x  # gain invariance
        frames = np.lib.stride_tricks.sliding_window_view(x, _N_FFT)[::_HOP] * self._window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        return np.concatenate([
            self._mel_stats(power),
            self._spectral_shape(power[:, self._band]),
            self._pitch_stats(x),
            self._rhythm(power[:, self._band].sum(axis=1)),
        ])

    def _mel_stats(self, power: np.ndarray) -> np.ndarray:
        logmel = np.log(power @ self._mel + 1e-8)
        loudness = logmel.mean(axis=1)
        # Only frames within 30 dB of the loudest describe the cry; pauses describe the room.
        loud = loudness >= loudness.max() - np.log(1e3)
        spectrum = logmel[loud] - logmel[loud].mean()
        delta = np.diff(logmel, axis=0)
        return np.concatenate([spectrum.mean(axis=0), spectrum.std(axis=0), delta.std(axis=0)])

    def _spectral_shape(self, power: np.ndarray) -> np.ndarray:
        total = power.sum(axis=1) + 1e-12
        loud = total >= total.max() * 1e-3
        p, total = power[loud], total[loud]
        centroid = (p @ self._band_freqs) / total / _F_HI
        flatness = np.exp(np.log(p + 1e-12).mean(axis=1)) / (p.mean(axis=1) + 1e-12)
        cumulative = np.cumsum(p, axis=1) / total[:, None]
        rolloff = self._band_freqs[np.argmax(cumulative >= 0.85, axis=1)] / _F_HI
        high_ratio = p[:, ~self._low_half].sum(axis=1) / total
        return np.array([centroid.mean(), centroid.std(), flatness.mean(), flatness.std(),
                         rolloff.mean(), rolloff.std(), high_ratio.mean(), high_ratio.std()])

    def _pitch_stats(self, x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, _PITCH_FRAME)[::_HOP]
        frames = frames - frames.mean(axis=1, keepdims=True)
        nfft = 2 * _PITCH_FRAME
        acf = np.fft.irfft(np.abs(np.fft.rfft(frames, nfft, axis=1)) ** 2, nfft, axis=1)
        energy = acf[:, 0]
        overlap = (_PITCH_FRAME - np.arange(self._min_lag, self._max_lag + 1)) / _PITCH_FRAME
        norm = acf[:, self._min_lag : self._max_lag + 1] / np.maximum(energy[:, None], 1e-12) / overlap
        strength = norm.max(axis=1)
        f0 = SAMPLE_RATE / (self._min_lag + norm.argmax(axis=1))
        loud = energy >= energy.max() * 1e-3
        voiced = loud & (strength >= 0.5)
        if voiced.sum() < 3:
            return np.array([0.0, 0.0, 0.0, 0.0, 0.0, strength[loud].mean() if loud.any() else 0.0, 0.0])
        log_f0 = np.log2(f0[voiced])
        jumps = np.abs(np.diff(log_f0))
        return np.array([
            voiced.sum() / max(loud.sum(), 1),  # voicing fraction
            np.median(log_f0) - np.log2(400.0),  # pitch, in octaves around a typical cry
            np.subtract(*np.percentile(log_f0, [90, 10])),  # pitch range
            np.median(jumps),  # frame-to-frame pitch jitter
            np.mean(jumps > 1 / 12),  # pitch breaks over a semitone: a nonlinear-phonation cue
            strength[loud].mean(),  # periodicity ~ harmonics-to-noise
            strength[voiced].std(),
        ])

    @staticmethod
    def _rhythm(energy: np.ndarray) -> np.ndarray:
        env = np.log(energy + 1e-10)
        env = env - env.mean()
        spectrum = np.abs(np.fft.rfft(env)) ** 2
        freqs = np.fft.rfftfreq(len(env), _HOP / SAMPLE_RATE)
        total = spectrum[1:].sum() + 1e-12
        bands = [spectrum[(freqs >= lo) & (freqs < hi)].sum() / total for lo, hi in _ENVELOPE_BANDS_HZ]
        duty = np.mean(env >= env.max() - np.log(100.0))
        return np.array([*bands, env.std() / 10, duty])
