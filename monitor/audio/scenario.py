"""Built-in synthetic scenarios, so the demo and tests run with no microphone and no data files.

They are synthesised (harmonic cry-like bouts, monitor alarm beeps, speech-like babble, NICU room
noise) and every description says so: they show the pipeline working, not clinical performance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from monitor.audio.decode import AudioError
from monitor.messages import SAMPLE_RATE


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str
    samples: np.ndarray
    cry_spans_s: tuple[tuple[float, float], ...]  # where cry-like sound was placed, for checks


def _room_noise(rng: np.random.Generator, n: int) -> np.ndarray:
    """Pink-ish ventilation noise with a slow breathing-machine swell and faint mains hum."""
    white = rng.standard_normal(n)
    pink = lfilter([0.049922, -0.095993, 0.050612, -0.004408], [1, -2.494956, 2.017265, -0.522189], white)
    t = np.arange(n) / SAMPLE_RATE
    swell = 1 + 0.5 * np.sin(2 * np.pi * 0.4 * t)
    return 0.004 * pink / np.std(pink) * swell + 0.0008 * np.sin(2 * np.pi * 50 * t)


def _resonate(x: np.ndarray, formants: tuple[tuple[float, float], ...]) -> np.ndarray:
    """Sum of two-pole resonators: a crude vocal tract."""
    out = np.zeros_like(x)
    for freq, bandwidth in formants:
        r = np.exp(-np.pi * bandwidth / SAMPLE_RATE)
        theta = 2 * np.pi * freq / SAMPLE_RATE
        out += lfilter([1 - r], [1, -2 * r * np.cos(theta), r * r], x)
    return out


def _harmonic_voice(rng: np.random.Generator, f0: np.ndarray, harmonics: int) -> np.ndarray:
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLE_RATE
    voice = np.zeros(len(f0))
    for k in range(1, harmonics + 1):
        audible = (k * f0 < SAMPLE_RATE / 2 - 200).astype(float)
        voice += audible * np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**0.8
    return voice


def _cry_bout(rng: np.random.Generator, duration: float) -> np.ndarray:
    """One expiratory cry: rise-fall F0 around 450 Hz with vibrato, formants, breathy noise."""
    n = int(duration * SAMPLE_RATE)
    t = np.linspace(0, 1, n)
    base = rng.uniform(380, 520)
    f0 = base * (1 + 0.25 * np.sin(np.pi * t) ** 1.5) * (1 + 0.02 * np.sin(2 * np.pi * 6 * t * duration))
    f0 *= 1 + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n)
    voice = _harmonic_voice(rng, f0, 14) + 0.15 * rng.standard_normal(n)
    shaped = _resonate(voice, ((1100, 300), (3300, 500), (5000, 800)))
    envelope = np.minimum(1, np.minimum(t, 1 - t) * duration / 0.06)
    return shaped / np.max(np.abs(shaped)) * envelope


def _alarm(n_beeps: int, freq: float = 960.0) -> np.ndarray:
    """IEC 60601-1-8 style medium-priority pattern: short harmonic-rich pulses."""
    pulse_n, gap_n = int(0.18 * SAMPLE_RATE), int(0.12 * SAMPLE_RATE)
    t = np.arange(pulse_n) / SAMPLE_RATE
    pulse = sum(np.sin(2 * np.pi * freq * k * t) / k for k in range(1, 6))
    pulse *= np.minimum(1, np.minimum(t, t[::-1]) / 0.01)
    one = np.concatenate([pulse, np.zeros(gap_n)])
    return np.tile(one, n_beeps)


def _babble(rng: np.random.Generator, duration: float) -> np.ndarray:
    """Speech-like sound: adult pitch, syllable-rate on/off, moving formants."""
    n = int(duration * SAMPLE_RATE)
    t = np.arange(n) / SAMPLE_RATE
    f0 = rng.uniform(105, 190) * (1 + 0.1 * np.sin(2 * np.pi * 0.7 * t))
    voice = _harmonic_voice(rng, f0, 30)
    syllables = (np.sin(2 * np.pi * 4.0 * t + rng.uniform(0, 6)) > -0.2).astype(float)
    syllables = np.convolve(syllables, np.ones(320) / 320, mode="same")
    shaped = _resonate(voice, ((rng.uniform(450, 750), 90), (rng.uniform(1100, 1800), 120), (2600, 200)))
    return shaped / np.max(np.abs(shaped)) * syllables


def _place(track: np.ndarray, sound: np.ndarray, at_s: float, gain: float) -> None:
    start = int(at_s * SAMPLE_RATE)
    end = min(len(track), start + len(sound))
    track[start:end] += gain * sound[: end - start]


def _render_nicu(rng: np.random.Generator, with_cry: bool) -> tuple[np.ndarray, tuple[tuple[float, float], ...]]:
    duration = 60.0
    track = _room_noise(rng, int(duration * SAMPLE_RATE))
    _place(track, _alarm(3), 4.0, 0.08)
    _place(track, _babble(rng, 5.0), 9.0, 0.12)
    _place(track, _alarm(3), 48.0, 0.08)
    spans = []
    if with_cry:  # a spell long enough for the crying alarm ([alerts] crying_s, 30 s)
        start = at = 14.0
        while at < 54.0:
            bout = rng.uniform(0.7, 1.4)
            _place(track, _cry_bout(rng, bout), at, 0.35)
            at += bout + rng.uniform(0.25, 0.45)
        spans.append((start, at))
    return track.astype(np.float32), tuple(spans)


_SCENARIOS = {
    "nicu": ("60 s NICU bedside: room noise, alarm beeps, adult babble, a 40 s cry-like spell", True),
    "quiet": ("60 s NICU bedside without any cry: room noise, alarm beeps, adult babble", False),
}


def scenario_names() -> tuple[str, ...]:
    return tuple(_SCENARIOS)


def render_scenario(name: str, seed: int = 7) -> Scenario:
    if name not in _SCENARIOS:
        raise AudioError(f"unknown scenario {name!r}: use one of {', '.join('scenario:' + n for n in _SCENARIOS)}")
    text, with_cry = _SCENARIOS[name]
    samples, spans = _render_nicu(np.random.default_rng(seed), with_cry)
    return Scenario(name, f"SYNTHETIC scenario {name!r} ({text}; generated sound, not a real infant)",
                    samples, spans)
