"""Cry-in-background mixing shared by the detector's on-the-fly training and the DCASE-style benchmark.

Everything is 16 kHz mono float32 and deterministic given an `np.random.Generator`. Labels are per
FRAME_HOP frame. Levels: `nicu_sound` is peak-normalised to 1.0, `room_noise` has unit RMS; callers set
the level.
"""
from __future__ import annotations

import itertools
import re
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import soxr
from scipy import signal

from monitor.audio import load_audio
from monitor.messages import SAMPLE_RATE
from train.datasets import CRY_COLUMN_SOURCES, Record
from train.splits import Split, check_leakage

FRAME_HOP = 320  # 20 ms: label resolution
SIDES = ("train", "val", "test")
NICU_KINDS = ("alarm_high", "alarm_medium", "alarm_low", "cpap", "fan", "pump", "knock")
# Synthesised confusers, used only when asked for (BackgroundMaker's extra_kinds): harmonic tones and buzz
HARD_KINDS = ("beep_triple", "beep_continuous", "pulse_oximeter", "ventilator_alarm", "pump_alarm", "machine_buzz")
BEEP_BAND_HZ = (400.0, 1200.0)  # fundamental of the monitor, oximeter, ventilator and pump beeps
BUZZ_BAND_HZ = (30.0, 200.0)  # fundamental of the engine / drill / chainsaw buzz
EBR_RANGE_DB = (-9.0, 9.0)
GAIN_RANGE_DB = (-10.0, 10.0)
P_CRY = 0.55
P_ALARM = 0.4
P_OTHER_NICU = 0.25  # each of cpap, fan, pump, knock
LATE_TAIL_FRAMES = 50  # a late-placed cry keeps at least its first second (or all of a shorter one)
HARD_LEVEL_DBFS = (-35.0, -10.0)  # a mined hard negative: up to as loud as a near cry
P_EXTRA_KIND = 0.15  # each of the extra kinds, when asked for
CLIPS_PER_S = 0.12  # everyday non-cry clips (the cries collection's negatives) per second of background
EXTRA_CLIPS_PER_S = 0.08  # extra negatives (the second collection), when asked for, beside CLIPS_PER_S of the others
# Peak level (dBFS range) of each synthesised NICU sound in a background; a kind not named here: NICU_PEAK_DBFS_OTHER
NICU_PEAK_DBFS = {"cpap": (-40.0, -25.0), "fan": (-40.0, -25.0), "pump": (-35.0, -15.0), "knock": (-30.0, -10.0),
                  "machine_buzz": (-35.0, -15.0)}
NICU_PEAK_DBFS_OTHER = (-30.0, -10.0)


# ---------------------------------------------------------------------------------------------
# Split


def _stratum(record: Record) -> str:
    """Every cry of a corpus is one stratum (types don't matter to a detector); negatives by category.

    A CRY_COLUMN_SOURCES negative's label is only a model's guess at its category: one stratum.
    """
    if record.target != "not_cry":
        return f"{record.source}:cry"
    return f"{record.source}:{'not_cry' if record.source in CRY_COLUMN_SOURCES else record.label}"


def _sides(records: list[Record], rng: np.random.Generator, fixed: dict[str, str]) -> dict[str, str]:
    """~60/20/20 of the groups (split_key) per stratum that `fixed` does not already place."""
    by_group: dict[str, list[Record]] = defaultdict(list)
    for record in records:
        if record.split_key not in fixed:
            by_group[record.split_key].append(record)
    strata: dict[str, list[str]] = defaultdict(list)
    for key in sorted(by_group):
        strata[min(_stratum(r) for r in by_group[key])].append(key)
    side_of: dict[str, str] = {}
    for stratum in sorted(strata):
        keys = [strata[stratum][i] for i in rng.permutation(len(strata[stratum]))]
        n_test = max(1, round(0.2 * len(keys))) if len(keys) >= 2 else 0
        n_val = max(1, round(0.2 * len(keys))) if len(keys) >= 3 else 0
        for i, key in enumerate(keys):
            side_of[key] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return side_of


def detector_split(records: list[Record], seed: int = 0, more: list[Record] | None = None) -> dict[str, list[Record]]:
    """~60/20/20 of groups per stratum (source x cry/category); a stratum of 2 groups gives train and test one each.

    `records` (the cries collection) are split alone, so adding `more` (the second collection) moves none of
    their groups: the shipped detector trained on those train groups. A group of `more` that `records` hold
    too (the same installation or Freesound recording) takes its side; the others are split the same way,
    with a generator of their own.
    """
    side_of = _sides(records, np.random.default_rng(seed), {})
    every = records
    if more:
        side_of |= _sides(more, np.random.default_rng([seed, 1]), side_of)
        every = records + more
    splits = {side: [r for r in every if side_of[r.split_key] == side] for side in SIDES}
    check_detector_split(splits)
    return splits


def check_detector_split(splits: dict[str, list[Record]]) -> None:
    """LeakageError if a group sits on two sides (checked pairwise over one combined list)."""
    combined = [r for side in SIDES for r in splits[side]]
    bounds = np.cumsum([0] + [len(splits[side]) for side in SIDES])
    index = {side: np.arange(bounds[i], bounds[i + 1]) for i, side in enumerate(SIDES)}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        check_leakage(combined, Split(index[a], index[b]))


# ---------------------------------------------------------------------------------------------
# Where a clip is active


def _runs(mask: np.ndarray) -> np.ndarray:
    """(start, end) frame pairs of the True runs."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1)


def frame_db(samples: np.ndarray) -> np.ndarray:
    n = len(samples) // FRAME_HOP
    frames = samples[: n * FRAME_HOP].reshape(n, FRAME_HOP).astype(np.float64)
    return 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)


def cry_frames(samples: np.ndarray) -> np.ndarray:
    """Active frames of an isolated clip: above max(peak - 20 dB, floor + 10 dB), gaps < 0.3 s bridged, runs < 0.1 s dropped.

    Relative to the clip's own peak and noise floor (10th percentile), since corpora are recorded at any level.
    """
    db = frame_db(samples)
    if db.size == 0:
        return np.zeros(0, bool)
    active = db > max(db.max() - 20.0, np.percentile(db, 10) + 10.0)
    runs = _runs(active)
    for (_, end), (start, _) in itertools.pairwise(runs):
        if (start - end) * FRAME_HOP < 0.3 * SAMPLE_RATE:
            active[end:start] = True
    for start, end in _runs(active):
        if (end - start) * FRAME_HOP < 0.1 * SAMPLE_RATE:
            active[start:end] = False
    return active


def audibility(event: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Per frame, how audible the event is over the background: 1 from -5 dB event-to-background up,
    0 below -15 dB. Training targets use it, so the detector is not taught to hear the inaudible."""
    ratio_db = frame_db(event) - frame_db(background)
    return np.clip((ratio_db + 15.0) / 10.0, 0.0, 1.0).astype(np.float32)


def event_bounds(samples: np.ndarray) -> tuple[int, int] | None:
    """(onset, offset) sample of the first and last active frame, or None for a clip with no activity."""
    active = np.flatnonzero(cry_frames(samples))
    if active.size == 0:
        return None
    return int(active[0]) * FRAME_HOP, (int(active[-1]) + 1) * FRAME_HOP


def active_rms(samples: np.ndarray) -> float:
    """RMS over the active frames (all frames if none), so padded silence doesn't lower a clip's level."""
    mask = cry_frames(samples)
    frames = samples[: len(mask) * FRAME_HOP].reshape(-1, FRAME_HOP)[mask] if mask.any() else samples
    return float(np.sqrt(np.mean(np.square(frames, dtype=np.float64)) + 1e-20))


# ---------------------------------------------------------------------------------------------
# Synthesised NICU sounds


def db_gain(db: float) -> float:
    return float(10 ** (db / 20))


def _peak_normalise(x: np.ndarray) -> np.ndarray:
    return (x / max(float(np.max(np.abs(x))), 1e-12)).astype(np.float32)


def _ramp(n: int, ramp: int) -> np.ndarray:
    """Raised-cosine rise and fall: IEC 60601-1-8 pulses have 10-20 % rise/fall, and clicks would be broadband."""
    env = np.ones(n)
    ramp = min(ramp, n // 2)
    edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    env[:ramp], env[n - ramp:] = edge, edge[::-1]
    return env


def _harmonic_pulse(rng: np.random.Generator, f0: float, seconds: float, weights: np.ndarray,
                    ramp_s: float | None = None) -> np.ndarray:
    """Harmonics of f0 at `weights`, random phases; rise and fall 20 % of the pulse, or `ramp_s` each."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(w * np.sin(2 * np.pi * f0 * (k + 1) * t + rng.uniform(0, 2 * np.pi)) for k, w in enumerate(weights))
    return tone * _ramp(len(t), int(0.2 * len(t)) if ramp_s is None else int(ramp_s * SAMPLE_RATE))


def _alarm_onsets(kind: str, rng: np.random.Generator, pulse: float) -> tuple[list[float], float]:
    """Pulse start times within one burst, and the burst repetition period (IEC 60601-1-8 table 3)."""
    if kind == "alarm_high":  # x-x-x---x-x ...... x-x-x---x-x: 10 pulses
        gap = rng.uniform(0.05, 0.125)
        half = [0.0, pulse + gap, 2 * (pulse + gap), 4 * pulse + 4 * gap, 5 * pulse + 5 * gap]
        second = half[-1] + pulse + rng.uniform(0.35, 1.0)
        onsets = half + [second + t for t in half]
        return onsets, onsets[-1] + pulse + rng.uniform(2.5, 6.0)
    gap = rng.uniform(0.125, 0.25)
    count = 3 if kind == "alarm_medium" else int(rng.integers(1, 3))
    onsets = [i * (pulse + gap) for i in range(count)]
    return onsets, rng.uniform(3.0, 8.0) if kind == "alarm_medium" else rng.uniform(10.0, 20.0)


def _alarm(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    # high priority pulses 75-200 ms, medium/low 125-250 ms; >= 4 harmonics within 15 dB of the fundamental
    pulse = rng.uniform(0.125, 0.2) if kind == "alarm_high" else rng.uniform(0.125, 0.25)
    f0 = rng.uniform(150, 1000)
    weights = np.array([db_gain(-rng.uniform(0, 15)) if k else 1.0 for k in range(int(rng.integers(4, 7)))])
    tone = _harmonic_pulse(rng, f0, pulse, weights)
    onsets, period = _alarm_onsets(kind, rng, pulse)
    out = np.zeros(n)
    start = -rng.uniform(0, period)  # a random phase of the repeating burst
    while start < n / SAMPLE_RATE:
        for onset in onsets:
            i = round((start + onset) * SAMPLE_RATE)
            lo, hi = max(i, 0), min(i + len(tone), n)
            if hi > lo:
                out[lo:hi] += tone[lo - i: hi - i]
        start += period
    return out


def _cpap(rng: np.random.Generator, n: int) -> np.ndarray:
    """Band-passed hiss swelling with each ventilator breath (~0.5 Hz)."""
    t = np.arange(n) / SAMPLE_RATE
    rate = rng.uniform(0.4, 0.7)
    breath = (0.5 + 0.5 * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))) ** 2
    sos = signal.butter(2, [rng.uniform(200, 600), rng.uniform(3000, 6000)], "bandpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n)) * (rng.uniform(0.2, 0.5) + breath)


def _fan(rng: np.random.Generator, n: int) -> np.ndarray:
    """Mains hum harmonics, a blade-pass tone with slow wobble, and low broadband air noise."""
    t = np.arange(n) / SAMPLE_RATE
    mains = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)  # motor slip shifts it
    hum = sum(db_gain(-rng.uniform(0, 20)) * np.sin(2 * np.pi * mains * k * t + rng.uniform(0, 6.3)) for k in (1, 2, 3))
    blade_hz = rng.uniform(20, 40) * rng.integers(5, 10)
    wobble = 1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 2) * t)
    blade = db_gain(-rng.uniform(0, 10)) * wobble * np.sin(2 * np.pi * blade_hz * t)
    sos = signal.butter(2, rng.uniform(400, 1500), "lowpass", fs=SAMPLE_RATE, output="sos")
    air = db_gain(-rng.uniform(0, 10)) * signal.sosfilt(sos, rng.standard_normal(n))
    return hum + blade + air / max(float(np.std(air)), 1e-12) * 0.3


def _place(out: np.ndarray, sound: np.ndarray, at: int) -> None:
    lo, hi = max(at, 0), min(at + len(sound), len(out))
    if hi > lo:
        out[lo:hi] += sound[lo - at: hi - at]


def _pump(rng: np.random.Generator, n: int) -> np.ndarray:
    """Infusion pump: sparse 2-4 kHz beeps and regular motor clicks."""
    out = np.zeros(n)
    beep = _harmonic_pulse(rng, rng.uniform(2000, 4000), rng.uniform(0.05, 0.15), np.array([1.0]))
    t = rng.uniform(0, 3)
    while t * SAMPLE_RATE < n:
        for repeat in range(int(rng.integers(1, 3))):
            _place(out, beep, int((t + repeat * 0.25) * SAMPLE_RATE))
        t += rng.uniform(2, 8)
    click_len = int(rng.uniform(0.002, 0.005) * SAMPLE_RATE)
    click = rng.standard_normal(click_len) * np.exp(-np.arange(click_len) / (click_len / 4)) * db_gain(-rng.uniform(3, 12))
    period = rng.uniform(0.5, 2.0)
    for at in np.arange(rng.uniform(0, period), n / SAMPLE_RATE, period):
        _place(out, click, int(at * SAMPLE_RATE))
    return out


def _knock(rng: np.random.Generator, n: int) -> np.ndarray:
    """Door or trolley knocks: groups of damped resonances (a few modes) with a noise transient."""
    out = np.zeros(n)
    length = int(0.3 * SAMPLE_RATE)
    t = np.arange(length) / SAMPLE_RATE
    modes = [(rng.uniform(100, 800), rng.uniform(0.02, 0.08)) for _ in range(int(rng.integers(2, 4)))]
    impulse = np.sum([np.sin(2 * np.pi * f * t) * np.exp(-t / tau) for f, tau in modes], axis=0)
    impulse[:40] += rng.standard_normal(40) * np.exp(-np.arange(40) / 8)
    for at in rng.uniform(0, n / SAMPLE_RATE, int(rng.integers(1, 4))):
        for k in range(int(rng.integers(1, 5))):
            _place(out, impulse * db_gain(-rng.uniform(0, 6)), int((at + k * rng.uniform(0.15, 0.3)) * SAMPLE_RATE))
    return out


def _beep_weights(rng: np.random.Generator, f0: float) -> np.ndarray:
    """2-5 harmonics, each 3-20 dB under the fundamental (below Nyquist), so f0 is a beep's strongest line."""
    count = max(1, min(int(rng.integers(2, 6)), int(0.45 * SAMPLE_RATE // f0)))
    return np.array([db_gain(-rng.uniform(3, 20)) if k else 1.0 for k in range(count)])


def _beep(rng: np.random.Generator, f0: float, seconds: float, ramp_s: float | None = None,
          weights: np.ndarray | None = None) -> np.ndarray:
    return _harmonic_pulse(rng, f0, seconds, _beep_weights(rng, f0) if weights is None else weights, ramp_s)


def _beep_f0(rng: np.random.Generator) -> float:
    return float(rng.uniform(*BEEP_BAND_HZ))


def _repeating(rng: np.random.Generator, n: int, pattern: list[tuple[float, np.ndarray]], period: float) -> np.ndarray:
    """(onset s, sound) pattern repeated every `period` s from a random phase."""
    out = np.zeros(n)
    start = -rng.uniform(0, period)
    while start < n / SAMPLE_RATE:
        for onset, sound in pattern:
            _place(out, sound, round((start + onset) * SAMPLE_RATE))
        start += period
    return out


def _beep_triple(rng: np.random.Generator, n: int) -> np.ndarray:
    """A patient monitor's three-pulse beep (not the IEC melody: one pitch, its own cadence), every 1.5-5 s."""
    pulse, gap = rng.uniform(0.08, 0.2), rng.uniform(0.05, 0.15)
    tone = _beep(rng, _beep_f0(rng), pulse)
    return _repeating(rng, n, [(i * (pulse + gap), tone) for i in range(3)], 3 * (pulse + gap) + rng.uniform(1.2, 4.5))


def _beep_continuous(rng: np.random.Generator, n: int) -> np.ndarray:
    """One beep after another as long as the condition lasts, every 0.4-1.5 s."""
    pulse = rng.uniform(0.08, 0.3)
    return _repeating(rng, n, [(0.0, _beep(rng, _beep_f0(rng), pulse))], pulse + rng.uniform(0.3, 1.2))


def _pulse_oximeter(rng: np.random.Generator, n: int) -> np.ndarray:
    """A beep per heartbeat (60-180 bpm, drifting); its pitch falls a fixed step per % SpO2 (a random walk, 80-100 %)."""
    out = np.zeros(n)
    pitch_at_100 = rng.uniform(750, BEEP_BAND_HZ[1])
    step = rng.uniform(0.2, 0.4)  # semitones per % SpO2: 20 % down stays above 400 Hz
    spo2 = float(rng.integers(86, 101))
    bpm = rng.uniform(60, 180)
    length = rng.uniform(0.04, 0.1)
    weights = _beep_weights(rng, pitch_at_100)  # one timbre; only the pitch moves
    t = -rng.uniform(0, 60 / bpm)
    while t < n / SAMPLE_RATE:
        f0 = float(np.clip(pitch_at_100 * 2 ** (-step * (100 - spo2) / 12), *BEEP_BAND_HZ))
        _place(out, _beep(rng, f0, length, weights=weights), round(t * SAMPLE_RATE))
        spo2 = float(np.clip(spo2 + rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0]), 80, 100))
        bpm = float(np.clip(bpm * rng.uniform(0.97, 1.03), 60, 180))
        t += 60 / bpm
    return out


def _ventilator_alarm(rng: np.random.Generator, n: int) -> np.ndarray:
    """Two tones alternating 2-4 times (high-low), then a pause: the burst repeats."""
    low = rng.uniform(BEEP_BAND_HZ[0], 800)
    high = min(low * rng.uniform(1.2, 1.5), BEEP_BAND_HZ[1])
    length, gap = rng.uniform(0.15, 0.4), rng.uniform(0.02, 0.1)
    tones = (_beep(rng, high, length), _beep(rng, low, length))
    pairs = int(rng.integers(2, 5))
    pattern = [(i * (length + gap), tones[i % 2]) for i in range(2 * pairs)]
    return _repeating(rng, n, pattern, 2 * pairs * (length + gap) + rng.uniform(1.0, 5.0))


def _pump_alarm(rng: np.random.Generator, n: int) -> np.ndarray:
    """An infusion pump's occlusion alarm: long tones (0.5-2 s on, 0.3-1 s off), or one continuous tone."""
    f0 = _beep_f0(rng)
    if rng.random() < 0.3:
        return _beep(rng, f0, n / SAMPLE_RATE, ramp_s=0.02)
    on = rng.uniform(0.5, 2.0)
    return _repeating(rng, n, [(0.0, _beep(rng, f0, on))], on + rng.uniform(0.3, 1.0))


def _machine_buzz(rng: np.random.Generator, n: int) -> np.ndarray:
    """Chainsaw, drill or engine: a sawtooth / pulse train at 30-200 Hz whose RPM wobbles and revs, amplitude
    modulated (firing irregularity), through a housing resonance, with some exhaust / air noise."""
    t = np.arange(n) / SAMPLE_RATE
    wobble = signal.sosfiltfilt(signal.butter(2, 3.0, fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    wobble /= max(float(np.std(wobble)), 1e-12)
    revs = np.sin(2 * np.pi * rng.uniform(0.05, 0.5) * t + rng.uniform(0, 2 * np.pi))
    f0 = rng.uniform(*BUZZ_BAND_HZ) * (1 + rng.uniform(0.01, 0.05) * wobble + rng.uniform(0, 0.15) * revs)
    phase = np.cumsum(np.clip(f0, *BUZZ_BAND_HZ)) / SAMPLE_RATE % 1.0
    saw = 2 * phase - 1
    pulse = np.where(phase < rng.uniform(0.1, 0.5), 1.0, -1.0)
    mix = rng.uniform(0, 1)
    x = mix * saw + (1 - mix) * pulse
    x -= np.mean(x)
    b, a = _biquad("peak", rng.uniform(300, 3000), rng.uniform(0, 9), rng.uniform(0.7, 2.0))
    x = signal.lfilter(b, a, x)
    x = signal.sosfilt(signal.butter(4, rng.uniform(2000, 6000), fs=SAMPLE_RATE, output="sos"), x)  # no aliased top
    am = 1 + rng.uniform(0.1, 0.5) * np.sin(2 * np.pi * rng.uniform(2, 15) * t + rng.uniform(0, 2 * np.pi))
    air = signal.sosfilt(signal.butter(2, rng.uniform(500, 3000), fs=SAMPLE_RATE, output="sos"), rng.standard_normal(n))
    air *= db_gain(-rng.uniform(10, 25)) * np.std(x) / max(float(np.std(air)), 1e-12)
    return x * am * (1 + 0.3 * revs) + air


_MAKERS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "cpap": _cpap, "fan": _fan, "pump": _pump, "knock": _knock, "beep_triple": _beep_triple,
    "beep_continuous": _beep_continuous, "pulse_oximeter": _pulse_oximeter, "ventilator_alarm": _ventilator_alarm,
    "pump_alarm": _pump_alarm, "machine_buzz": _machine_buzz}


def nicu_sound(kind: str, rng: np.random.Generator, seconds: float) -> np.ndarray:
    """A synthetic NICU sound of `kind` (NICU_KINDS or HARD_KINDS), peak-normalised to 1.0."""
    n = int(seconds * SAMPLE_RATE)
    if kind.startswith("alarm_") and kind in NICU_KINDS:
        return _peak_normalise(_alarm(kind, rng, n))
    if kind not in _MAKERS:
        raise ValueError(f"unknown NICU sound {kind!r}: use one of {', '.join(NICU_KINDS + HARD_KINDS)}")
    return _peak_normalise(_MAKERS[kind](rng, n))


def room_noise(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Unit-RMS noise with a 1/f^a spectrum, a in [1, 2] (pink to brown): a quiet room's floor."""
    n = int(seconds * SAMPLE_RATE)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / SAMPLE_RATE), 20.0)  # no DC boost
    x = np.fft.irfft(spectrum / freqs ** (rng.uniform(1.0, 2.0) / 2), n)
    return (x / max(float(np.std(x)), 1e-12)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Mixing


def mix_at_ebr(background: np.ndarray, event: np.ndarray, position: int, ebr_db: float,
               active: np.ndarray | None = None) -> np.ndarray:
    """background + event scaled to `ebr_db` event-to-background ratio and added at sample `position`.

    As in DCASE 2017 task 2: event energy over its active frames vs background energy over the same span.
    `active` gives those frames (one per FRAME_HOP of `event`) where the event is not one clip, e.g. a spell of
    several clips whose activity each clip's own cry_frames found; by default cry_frames(event).
    """
    n = min(len(event), len(background) - position) // FRAME_HOP * FRAME_HOP
    if position < 0 or n <= 0:
        raise ValueError(f"event at sample {position} does not fit a background of {len(background)} samples")
    event = event[:n]
    mask = cry_frames(event) if active is None else active[: n // FRAME_HOP]
    if not mask.any():
        mask = np.ones(len(mask), bool)
    ev = event.reshape(-1, FRAME_HOP)[mask]
    bg = background[position: position + n].reshape(-1, FRAME_HOP)[mask]
    event_energy = np.mean(np.square(ev, dtype=np.float64))
    background_energy = np.mean(np.square(bg, dtype=np.float64)) + 1e-20
    gain = np.sqrt(10 ** (ebr_db / 10) * background_energy / max(event_energy, 1e-20))
    out = background.astype(np.float32, copy=True)
    out[position: position + n] += (gain * event).astype(np.float32)
    return out


def nicu_level(kind: str, rng: np.random.Generator) -> float:
    """A random gain for a peak-normalised nicu_sound of `kind` in a background (NICU_PEAK_DBFS)."""
    return db_gain(rng.uniform(*NICU_PEAK_DBFS.get(kind, NICU_PEAK_DBFS_OTHER)))


class ClipCache:
    """Decoded clips in memory: each file is decoded (and resampled) once per process."""

    def __init__(self) -> None:
        self._clips: dict[str, np.ndarray] = {}

    def __call__(self, record: Record) -> np.ndarray:
        key = str(record.path)
        if key not in self._clips:
            self._clips[key] = load_audio(record.path)
        return self._clips[key]


def background_class(record: Record) -> str:
    """An extra negative's class in a background list: its source and label, so that a phone's speech
    (donateacry_raw:speech) or adult crying (deeply:adult_crying) stays apart from the cries collection's."""
    return f"{record.source}:{re.sub(r'[^a-z0-9]+', '_', record.label.lower()).strip('_')}"


class BackgroundMaker:
    """Cry-free backgrounds: room floor + everyday non-cry clips + sometimes alarms and other NICU sounds.

    Asked for, also extra negatives (the second collection) and extra kinds (HARD_KINDS). Without them
    nothing more is drawn from the generator, so the default backgrounds are reproduced exactly. `clips_per_s` and
    `extra_clips_per_s` set how dense the clips are (the night benchmark's backgrounds are denser); the defaults
    reproduce the benchmark's.
    """

    def __init__(self, negatives: list[Record], cache: ClipCache | None = None,
                 extra_negatives: list[Record] | None = None, extra_kinds: tuple[str, ...] = (),
                 clips_per_s: float = CLIPS_PER_S, extra_clips_per_s: float = EXTRA_CLIPS_PER_S):
        if not negatives:
            raise ValueError("no non-cry clips to build backgrounds from")
        unknown = sorted(set(extra_kinds) - set(HARD_KINDS) - set(NICU_KINDS))
        if unknown:
            raise ValueError(f"unknown extra kind(s) {', '.join(unknown)}: use {', '.join(HARD_KINDS)}")
        self.negatives = negatives
        self.cache = cache or ClipCache()
        # Drawn a source first, so that 1,762 urban clips do not drown 279 adult vocalisations
        by_source: dict[str, list[Record]] = defaultdict(list)
        for record in extra_negatives or []:
            by_source[record.source].append(record)
        self.extra_pools = [by_source[source] for source in sorted(by_source)]
        self.extra_kinds = tuple(extra_kinds)
        self.clips_per_s = clips_per_s
        self.extra_clips_per_s = extra_clips_per_s

    def make(self, rng: np.random.Generator, seconds: float) -> tuple[np.ndarray, list[str]]:
        """Samples and the background class names used (esc50 categories, speech, NICU kinds, extra negatives as
        source:label; the room floor is always there)."""
        n = int(seconds * SAMPLE_RATE)
        out = room_noise(rng, seconds) * db_gain(rng.uniform(-60, -45))
        classes: list[str] = []
        for _ in range(rng.poisson(self.clips_per_s * seconds)):
            record = self.negatives[int(rng.integers(len(self.negatives)))]
            self._add_clip(out, record, rng, n)
            classes.append(record.label)
        kinds = [str(rng.choice(["alarm_high", "alarm_medium", "alarm_low"]))] if rng.random() < P_ALARM else []
        kinds += [k for k in ("cpap", "fan", "pump", "knock") if rng.random() < P_OTHER_NICU]
        if self.extra_pools:
            for _ in range(rng.poisson(self.extra_clips_per_s * seconds)):
                pool = self.extra_pools[int(rng.integers(len(self.extra_pools)))]
                record = pool[int(rng.integers(len(pool)))]
                self._add_clip(out, record, rng, n)
                classes.append(background_class(record))
        kinds += [k for k in self.extra_kinds if rng.random() < P_EXTRA_KIND]
        for kind in kinds:
            out += nicu_sound(kind, rng, seconds) * nicu_level(kind, rng)
        return out.astype(np.float32), sorted(set(classes + kinds))

    def _add_clip(self, out: np.ndarray, record: Record, rng: np.random.Generator, n: int) -> None:
        clip = self.cache(record)
        level = db_gain(rng.uniform(-40, -20)) / active_rms(clip)
        _place(out, clip * level, int(rng.integers(-len(clip) // 2, n)))


# ---------------------------------------------------------------------------------------------
# Training examples


def _biquad(kind: str, f0: float, gain_db: float, q: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    """RBJ audio-EQ-cookbook peaking / low-shelf / high-shelf filter."""
    a_gain, w0 = 10 ** (gain_db / 40), 2 * np.pi * f0 / SAMPLE_RATE
    cos, alpha = np.cos(w0), np.sin(w0) / (2 * q)
    if kind == "peak":
        b = [1 + alpha * a_gain, -2 * cos, 1 - alpha * a_gain]
        a = [1 + alpha / a_gain, -2 * cos, 1 - alpha / a_gain]
    else:
        s = 1 if kind == "low" else -1
        root = 2 * np.sqrt(a_gain) * alpha
        b = [a_gain * ((a_gain + 1) - s * (a_gain - 1) * cos + root), 2 * s * a_gain * ((a_gain - 1) - s * (a_gain + 1) * cos),
             a_gain * ((a_gain + 1) - s * (a_gain - 1) * cos - root)]
        a = [(a_gain + 1) + s * (a_gain - 1) * cos + root, -2 * s * ((a_gain - 1) + s * (a_gain + 1) * cos),
             (a_gain + 1) + s * (a_gain - 1) * cos - root]
    return np.array(b) / a[0], np.array(a) / a[0]


def reverberate(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Convolve with exponentially decaying noise (RT60 0.1-0.6 s), mixed wet/dry."""
    rt60 = rng.uniform(0.1, 0.6)
    t = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    ir = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    wet = signal.fftconvolve(x, ir / np.sqrt(np.sum(ir**2)))[: len(x)]
    mix = rng.uniform(0.2, 0.8)
    return ((1 - mix) * x + mix * wet).astype(np.float32)


def colour(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A cheap microphone: a gentle shelf or two and a peak (each within +-6 dB)."""
    y = x.astype(np.float64)
    for kind, lo, hi in (("low", 80, 400), ("peak", 500, 5000), ("high", 2000, 6000)):
        if rng.random() < 0.7:
            b, a = _biquad(kind, rng.uniform(lo, hi), rng.uniform(-6, 6), rng.uniform(0.5, 1.5) if kind == "peak" else 0.7)
            y = signal.lfilter(b, a, y)
    return y.astype(np.float32)


def band_limit(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Low-pass at 3.5-7.5 kHz: phone-band corpora and cheap microphones."""
    sos = signal.butter(6, rng.uniform(3500, 7500), "lowpass", fs=SAMPLE_RATE, output="sos")
    return signal.sosfilt(sos, x).astype(np.float32)


class TrainingMixer:
    """On-the-fly training examples: a background, a cry at random EBR in about half of them, augmentations."""

    def __init__(self, cries: list[Record], negatives: list[Record], seed: int = 0, p_cry: float = P_CRY,
                 hard: list[Record] | None = None, p_hard: float = 0.0, p_late: float = 0.0,
                 extra_negatives: list[Record] | None = None, extra_kinds: tuple[str, ...] = ()):
        if not cries:
            raise ValueError("no cry clips to mix")
        self.cries = cries
        self.cache = ClipCache()
        self.backgrounds = BackgroundMaker(negatives, self.cache, extra_negatives, extra_kinds)
        self.p_cry = p_cry
        self.hard = hard or []  # negatives the detector mistook for cries: drawn more often, and louder
        self.p_hard = p_hard
        # Share of cries whose onset may fall anywhere up to LATE_TAIL_FRAMES before the end, the tail cut
        # off: otherwise a long cry can only start in an example's first seconds, while a monitor
        # meets every onset after a long stretch of background.
        self.p_late = p_late
        self.rng = np.random.default_rng(seed)

    def example(self, seconds: float, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(samples, labels): 16 kHz float32 of len(labels) * FRAME_HOP samples, labels 1.0 on cry frames.

        Draws from `rng`, else from the mixer's own generator (seeded): give each worker its own `rng`.
        """
        rng = rng or self.rng
        frames = int(seconds * SAMPLE_RATE) // FRAME_HOP
        n = frames * FRAME_HOP
        mixture, _ = self.backgrounds.make(rng, n / SAMPLE_RATE)
        if self.hard and self.p_hard > 0 and rng.random() < self.p_hard:  # no draw otherwise: v1 reproduces
            clip = self.cache(self.hard[int(rng.integers(len(self.hard)))])
            _place(mixture, clip * (db_gain(rng.uniform(*HARD_LEVEL_DBFS)) / active_rms(clip)),
                   int(rng.integers(-len(clip) // 2, n)))
        labels = np.zeros(frames, np.float32)
        if rng.random() < self.p_cry:
            cry = self.cache(self.cries[int(rng.integers(len(self.cries)))])
            if rng.random() < 0.5:  # +-1 semitone, which also changes tempo by up to ~6 %
                ratio = 2 ** (rng.uniform(-1, 1) / 12)
                cry = soxr.resample(cry, SAMPLE_RATE, SAMPLE_RATE / ratio, quality="LQ").astype(np.float32)
            active = cry_frames(cry)  # labels follow the (possibly resampled) clip
            if self.p_late > 0 and rng.random() < self.p_late:  # no draw otherwise: v1 reproduces
                at = int(rng.integers(frames - min(len(active), LATE_TAIL_FRAMES) + 1))
                cry, active = cry[: (frames - at) * FRAME_HOP], active[: frames - at]
            else:
                if len(active) > frames:  # a random HOP-aligned crop of a long clip
                    start = int(rng.integers(len(active) - frames + 1))
                    cry, active = cry[start * FRAME_HOP: (start + frames) * FRAME_HOP], active[start: start + frames]
                at = int(rng.integers(frames - len(active) + 1)) if len(active) else 0
            if len(active):
                background = mixture
                mixture = mix_at_ebr(background, cry, at * FRAME_HOP, rng.uniform(*EBR_RANGE_DB))
                labels[at: at + len(active)] = active
                labels *= audibility(mixture - background, background)
        if rng.random() < 0.3:
            mixture = reverberate(mixture, rng)
        if rng.random() < 0.3:
            mixture = band_limit(mixture, rng)
        if rng.random() < 0.5:
            mixture = colour(mixture, rng)
        mixture = mixture * db_gain(rng.uniform(*GAIN_RANGE_DB))
        peak = float(np.max(np.abs(mixture)))
        return (mixture / peak * 0.99 if peak > 0.99 else mixture).astype(np.float32), labels
