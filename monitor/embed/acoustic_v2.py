"""acoustic-v2: acoustic-v1 plus the voice-quality cues that separate pain from other cries.

Pain cries carry more nonlinear phonation (hyperphonation above 1 kHz, pitch breaks, sub-harmonics,
noisy "dysphonated" frames) and rougher envelopes; those cues are added as 49 numbers computed from
the same peak-normalised, below-4 kHz view as acoustic-v1, so bandwidth and gain stay invisible.
"""
from __future__ import annotations

import numpy as np
import scipy.fft

from monitor.embed.acoustic import _F_HI, _F_LO, _HOP, _N_FFT, AcousticEmbedder
from monitor.messages import SAMPLE_RATE

_FRAME = 480  # 30 ms pitch frames every 10 ms, as in acoustic-v1
_F0_LO, _F0_HI = 150.0, 1600.0  # up to hyperphonation
_HYPER_HZ = 1000.0
_FRAME_RATE = SAMPLE_RATE / _HOP
_MOD_BANDS_HZ = ((1.0, 4.0), (4.0, 8.0), (8.0, 16.0), (16.0, 32.0), (32.0, 50.0))
_N_SPECTRAL_BANDS = 6


class AcousticV2Embedder(AcousticEmbedder):
    """acoustic-v1 without its pitch block (134) + voice quality (17) + spectral dynamics (12) + envelope
    modulation (20) = 183. The voice-quality block tracks pitch up to 1.6 kHz and supersedes v1's pitch block."""

    id = "acoustic-v2"

    def __init__(self) -> None:
        self._min_lag2 = int(SAMPLE_RATE / _F0_HI)
        self._max_lag2 = int(np.ceil(SAMPLE_RATE / _F0_LO))
        freqs = np.fft.rfftfreq(_N_FFT, 1 / SAMPLE_RATE)
        band_freqs = freqs[(freqs >= _F_LO) & (freqs <= _F_HI)]
        edges = np.geomspace(_F_LO, _F_HI + 1, _N_SPECTRAL_BANDS + 1)
        self._band_index = np.clip(np.digitize(band_freqs, edges) - 1, 0, _N_SPECTRAL_BANDS - 1)
        self._log_band_freqs = np.log2(band_freqs)
        super().__init__()

    def _features(self, x: np.ndarray) -> np.ndarray:
        peak = float(np.max(np.abs(x)))
        x = x / peak if peak > 0 else x
        frames = np.lib.stride_tricks.sliding_window_view(x, _N_FFT)[::_HOP] * self._window
        power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
        band = power[:, self._band]
        logmel = np.log(power @ self._mel + 1e-8)
        return np.concatenate([
            self._mel_stats(power),
            self._spectral_shape(band),
            self._rhythm(band.sum(axis=1)),
            self._voice_quality(x),
            self._spectral_dynamics(band),
            self._modulation(logmel),
        ])

    def _voice_quality(self, x: np.ndarray) -> np.ndarray:
        frames = np.lib.stride_tricks.sliding_window_view(x, _FRAME)[::_HOP]
        frames = frames - frames.mean(axis=1, keepdims=True)
        nfft = 2 * _FRAME
        spectrum = scipy.fft.rfft(frames.astype(np.float32), nfft, axis=1)  # float32: half the cost of numpy's
        acf = scipy.fft.irfft(spectrum.real**2 + spectrum.imag**2, nfft, axis=1)[:, : 2 * self._max_lag2 + 2]
        energy = acf[:, 0]
        lags = np.arange(acf.shape[1])
        norm = acf / np.maximum(energy[:, None], 1e-12) / ((_FRAME - lags) / _FRAME)
        search = norm[:, self._min_lag2 : self._max_lag2 + 1]
        k = search.argmax(axis=1)
        lag = self._min_lag2 + k
        strength = search.max(axis=1)
        # Parabolic interpolation: jitter needs sub-sample periods (1 sample is 3 % of a 500 Hz period).
        left, right = norm[np.arange(len(lag)), lag - 1], norm[np.arange(len(lag)), np.minimum(lag + 1, norm.shape[1] - 1)]
        denom = left - 2 * strength + right
        shift = np.where(np.abs(denom) > 1e-9, 0.5 * (left - right) / np.where(denom == 0, 1, denom), 0.0)
        period = np.clip(lag + shift, self._min_lag2 - 1, self._max_lag2 + 1)
        loud = energy >= energy.max() * 1e-3
        voiced = loud & (strength >= 0.5)
        noisy = loud & (strength < 0.3)
        if voiced.sum() < 3:
            return np.concatenate([np.zeros(16), [noisy.sum() / max(loud.sum(), 1)]])
        log_period_f0 = np.log2(SAMPLE_RATE / period)
        f0 = SAMPLE_RATE / period[voiced]
        log_f0 = log_period_f0[voiced]
        r = np.clip(strength[voiced], 0.01, 0.99)
        hnr = 10 * np.log10(r / (1 - r)) / 10
        # Consecutive voiced frames, for period-to-period measures; jumps over 0.1 octave are breaks, not jitter.
        both = voiced[1:] & voiced[:-1]
        step = np.diff(log_period_f0)[both]
        smooth = np.abs(step) < 0.1
        level = 10 * np.log10(energy + 1e-12)
        d_level = np.abs(np.diff(level))[both][smooth] if smooth.any() else np.zeros(1)
        jitter = np.median(np.abs(step[smooth])) if smooth.any() else 0.0
        melody = np.clip(np.mean(step[smooth]), -0.02, 0.02) * 100 if smooth.any() else 0.0
        double_lag = np.minimum(2 * lag[voiced], norm.shape[1] - 1)
        subharmonic = np.maximum(0.0, norm[np.flatnonzero(voiced), double_lag] - strength[voiced])
        runs = np.diff(np.concatenate([[0], voiced.astype(int), [0]]))
        lengths = (np.flatnonzero(runs == -1) - np.flatnonzero(runs == 1)) / _FRAME_RATE
        return np.array([
            voiced.sum() / max(loud.sum(), 1),
            *(np.percentile(log_f0, [10, 50, 90]) - np.log2(400.0)),
            np.mean(f0 > _HYPER_HZ),  # hyperphonation
            hnr.mean(), hnr.std(),
            jitter * 100,
            np.median(d_level) / 10,  # shimmer, dB per frame
            np.mean(np.abs(step) > 0.5) if len(step) else 0.0,  # octave breaks
            subharmonic.mean() * 10, np.mean(subharmonic > 0.05),
            lengths.mean(), lengths.std(), len(lengths) / (len(x) / SAMPLE_RATE),
            melody,  # rising or falling melody
            noisy.sum() / max(loud.sum(), 1),  # loud but aperiodic: dysphonation or noise
        ])

    def _spectral_dynamics(self, band: np.ndarray) -> np.ndarray:
        total = band.sum(axis=1) + 1e-12
        loud = total >= total.max() * 1e-3
        p = band[loud] / total[loud, None]
        flux = np.abs(np.diff(p, axis=0)).sum(axis=1) if len(p) > 1 else np.zeros(1)
        entropy = -(p * np.log(p + 1e-12)).sum(axis=1) / np.log(p.shape[1])
        shares = np.stack([p[:, self._band_index == b].sum(axis=1) for b in range(_N_SPECTRAL_BANDS)], axis=1)
        log_power = np.log(band[loud] + 1e-12)
        centred = self._log_band_freqs - self._log_band_freqs.mean()
        slope = (log_power - log_power.mean(axis=1, keepdims=True)) @ centred / (centred @ centred)
        return np.array([flux.mean(), flux.std(), entropy.mean(), entropy.std(),
                         *np.log(shares.mean(axis=0) + 1e-6) / 10, slope.mean() / 10, slope.std() / 10])

    @staticmethod
    def _modulation(logmel: np.ndarray) -> np.ndarray:
        """Envelope modulation spectrum of four mel-band groups (roughness lives at 30-50 Hz)."""
        groups = logmel.reshape(len(logmel), 4, -1).mean(axis=2)
        groups = groups - groups.mean(axis=0)
        spectrum = np.abs(np.fft.rfft(groups, axis=0)) ** 2
        freqs = np.fft.rfftfreq(len(groups), 1 / _FRAME_RATE)
        total = spectrum[1:].sum(axis=0) + 1e-12
        shares = [spectrum[(freqs >= lo) & (freqs < hi)].sum(axis=0) / total for lo, hi in _MOD_BANDS_HZ]
        return np.log(np.stack(shares).ravel() + 1e-6) / 10
