"""The cry F0 tracker (monitor/detect/pitch.py): generated tones with known F0, and real cries against Praat."""
from __future__ import annotations

import time

import numpy as np
import pytest
import soxr

from monitor.detect.pitch import F0_MAX_HZ, F0_MIN_HZ, HYPERPHONATION_HZ, PitchTracker, summarise
from tests.conftest import cry_path, pick

SR = 16_000
HOP = 320


def tone(f0: float | np.ndarray, seconds: float = 1.5, seed: int = 0, harmonics: int = 8, tilt_db: float = -6.0,
         h2_db: float = 0.0, drop_fundamental: bool = False) -> np.ndarray:
    """A cry-like harmonic complex: random phases, `tilt_db` per octave, nothing above 7.7 kHz."""
    rng = np.random.default_rng(seed)
    f0 = np.broadcast_to(np.asarray(f0, dtype=np.float64), (int(seconds * SR),))
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = np.zeros(len(f0))
    for k in range(2 if drop_fundamental else 1, harmonics + 1):
        gain_db = tilt_db * np.log2(k) + (h2_db if k == 2 else 0.0)
        x += 10 ** (gain_db / 20) * (k * f0 < SR / 2 - 300) * np.sin(k * phase + rng.uniform(0, 2 * np.pi))
    return (0.1 * x / np.abs(x).max()).astype(np.float32)


def with_noise(x: np.ndarray, snr_db: float, seed: int = 1) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal(len(x))
    noise *= np.sqrt(np.mean(x.astype(np.float64) ** 2) / np.mean(noise ** 2) / 10 ** (snr_db / 10))
    return (x + noise).astype(np.float32)


def phone(x: np.ndarray) -> np.ndarray:
    """Through a phone's 8 kHz sampling (4 kHz band) and back to 16 kHz."""
    return soxr.resample(soxr.resample(x, SR, 8000, quality="HQ"), 8000, SR, quality="HQ")[: len(x)].astype(np.float32)


def inner(f0: np.ndarray) -> np.ndarray:
    """The frames that fit (the first and last are NaN by construction)."""
    return f0[1:-1]


def within(f0: np.ndarray, truth: float | np.ndarray, tolerance: float = 0.02) -> float:
    """Share of frames within `tolerance` of the truth (unvoiced frames count as misses)."""
    with np.errstate(invalid="ignore"):
        return float(np.mean(np.abs(f0 / truth - 1) < tolerance))


@pytest.fixture(scope="module")
def tracker() -> PitchTracker:
    return PitchTracker()


@pytest.mark.parametrize("f0", [200.0, 300.0, 450.0, 600.0, 800.0, 1000.0, 1200.0, 1400.0, 1600.0, 1800.0])
def test_flat_tones_within_2_percent(tracker, f0):
    _, est = tracker.track_signal(tone(f0, seed=int(f0)))
    assert within(inner(est), f0) >= 0.95


@pytest.mark.parametrize("f0", [250.0, 500.0, 1200.0])
def test_noisy_tones_at_5_db_snr(tracker, f0):
    """White noise at 5 dB SNR: the dips at T, 2T, 3T are then equally deep give or take 10-25 %,
    which is where a deepest-dip tracker halves a high cry."""
    _, est = tracker.track_signal(with_noise(tone(f0), 5.0))
    assert within(inner(est), f0, 0.05) >= 0.9


@pytest.mark.parametrize("start, end", [(300.0, 1500.0), (1500.0, 400.0)])
def test_glides_are_tracked(tracker, start, end):
    seconds = 1.5
    contour = start * (end / start) ** (np.arange(int(seconds * SR)) / (seconds * SR))
    times, est = tracker.track_signal(tone(contour, seconds))
    truth = contour[np.rint(times * SR).astype(int)]
    assert within(inner(est), inner(truth), 0.03) >= 0.95


def test_vibrato_is_tracked(tracker):
    t = np.arange(int(1.5 * SR)) / SR
    contour = 500 * (1 + 0.05 * np.sin(2 * np.pi * 6 * t))
    times, est = tracker.track_signal(tone(contour))
    assert within(inner(est), inner(contour[np.rint(times * SR).astype(int)]), 0.02) >= 0.95


def test_steps_across_1_khz_are_not_smoothed_away(tracker):
    """A cry that breaks into hyperphonation and back: each 0.4 s step is tracked at its own pitch,
    except the frame or two that straddle a step."""
    t = np.arange(int(2.0 * SR)) / SR
    contour = np.where((t // 0.4) % 2 == 0, 600.0, 1250.0)
    times, est = tracker.track_signal(tone(contour, 2.0))
    truth = contour[np.rint(times * SR).astype(int)]
    assert within(inner(est), inner(truth), 0.02) >= 0.85
    assert summarise(est).hyperphonation == pytest.approx(np.mean(inner(truth) > HYPERPHONATION_HZ), abs=0.1)


@pytest.mark.parametrize("case, f0, options", [
    ("1.2 kHz", 1200.0, {}),
    ("1.6 kHz, phone band", 1600.0, {"phone": True}),
    ("500 Hz", 500.0, {}),
    ("500 Hz, 2nd harmonic +12 dB (the octave trap)", 500.0, {"h2_db": 12.0}),
    ("520 Hz, 2nd harmonic +20 dB", 520.0, {"h2_db": 20.0}),
    ("500 Hz, no fundamental", 500.0, {"drop_fundamental": True}),
    ("500 Hz, phone band", 500.0, {"phone": True}),
    ("500 Hz, 10 dB SNR", 500.0, {"snr_db": 10.0}),
    ("1.2 kHz, 10 dB SNR", 1200.0, {"snr_db": 10.0}),
])
def test_hyperphonation_share(tracker, case, f0, options):
    """The figure that matters: an octave error either way would flip it."""
    options = dict(options)  # the parameter set's own dict is left as it is, for any later run of it
    phone_band, snr_db = options.pop("phone", False), options.pop("snr_db", None)
    x = tone(f0, **options)
    x = phone(x) if phone_band else x
    x = with_noise(x, snr_db) if snr_db is not None else x
    _, est = tracker.track_signal(x)
    summary = summarise(est)
    assert summary.voiced >= 0.95 * (len(est) - 2), case
    assert summary.hyperphonation == pytest.approx(1.0 if f0 > HYPERPHONATION_HZ else 0.0, abs=0.03), case
    assert summary.median_hz == pytest.approx(f0, rel=0.02), case


@pytest.mark.parametrize("kind", ["white", "pink", "white, phone band", "silence", "faint hiss"])
def test_noise_and_silence_are_unvoiced(tracker, kind):
    rng = np.random.default_rng(7)
    n = 2 * SR
    if kind == "silence":
        x = np.zeros(n, np.float32)
    elif kind == "faint hiss":
        x = (1e-6 * rng.standard_normal(n)).astype(np.float32)
    else:
        x = rng.standard_normal(n)
        if kind == "pink":
            spectrum = np.fft.rfft(x) / np.sqrt(np.maximum(np.fft.rfftfreq(n, 1 / SR), 1.0))
            x = np.fft.irfft(spectrum, n)
        x = (0.1 * x / np.abs(x).max()).astype(np.float32)
        x = phone(x) if "phone" in kind else x
    _, est = tracker.track_signal(x)
    assert np.mean(~np.isnan(est)) <= 0.01


def test_quiet_frames_are_unvoiced_relative_to_the_batch(tracker):
    """A tone 50 dB under the batch's loud frames is room noise, not the cry."""
    x = np.concatenate([tone(450.0, 1.0), 10 ** (-50 / 20) * tone(450.0, 1.0, seed=3)])
    _, est = tracker.track_signal(x)
    assert np.mean(~np.isnan(est[2:48])) > 0.95
    assert np.all(np.isnan(est[53:]))


def test_frames_that_do_not_fit_are_nan(tracker):
    x = tone(500.0, 1.0)
    half = tracker.frame_length // 2
    centres = np.array([0, half - 1, half, 8000, len(x) - half, len(x) - half + 1, len(x) + 5, -10])
    est = tracker.track(x, centres)
    assert est.dtype == np.float32 and est.shape == centres.shape
    assert np.isnan(est[[0, 1, 5, 6, 7]]).all()
    assert est[[2, 3, 4]] == pytest.approx(500.0, rel=0.02)
    times, est = tracker.track_signal(x)
    assert np.isnan(est[0]) and np.isnan(est[-1])  # centred at 10 ms and 10 ms from the end: 40 ms frames stick out
    assert times[:3] == pytest.approx([0.01, 0.03, 0.05])


def test_empty_and_tiny_inputs(tracker):
    assert np.isnan(tracker.track(np.zeros(100, np.float32), np.array([50]))).all()
    assert len(tracker.track(tone(500.0, 1.0), np.array([], dtype=np.int64))) == 0
    times, est = tracker.track_signal(np.zeros(0, np.float32))
    assert len(times) == len(est) == 0
    summary = summarise(np.full(5, np.nan))
    assert summary.voiced == 0 and np.isnan(summary.median_hz) and np.isnan(summary.hyperphonation)


def test_track_agrees_with_track_signal(tracker):
    """The monitor calls `track` on crying frames only: a subset of the frames gives the same F0 as the
    whole recording (voicing compares with the batch's loud frames, so the subset keeps the loud ones)."""
    t = np.arange(int(2.0 * SR)) / SR
    x = tone(450 * (1 + 0.3 * np.sin(2 * np.pi * 0.5 * t)), 2.0)
    times, whole = tracker.track_signal(x)
    centres = np.rint(times * SR).astype(np.int64)
    assert centres.tolist() == (HOP // 2 + HOP * np.arange(len(times))).tolist()
    np.testing.assert_array_equal(tracker.track(x, centres), whole)
    subset = np.arange(20, 60)
    np.testing.assert_allclose(tracker.track(x, centres[subset]), whole[subset], rtol=1e-5)
    offset = 5000  # the same frames from a block that starts later in the stream
    np.testing.assert_allclose(tracker.track(x[offset:], centres[subset] - offset), whole[subset], rtol=1e-5)


def test_an_isolated_octave_blip_is_repaired_but_a_run_is_kept(tracker):
    """One frame an octave up between two agreeing neighbours is taken back to their pitch when it had
    a candidate there; a real jump lasting several frames is not (that would hide hyperphonation)."""
    t = np.arange(int(1.5 * SR)) / SR
    base = tone(500.0, 1.5)
    trap = tone(500.0, 1.5, h2_db=30.0, seed=5)  # a 1 kHz-dominated stretch whose 500 Hz period is still there
    blip = np.where((t > 0.70) & (t < 0.72), trap, base).astype(np.float32)
    _, est = tracker.track_signal(blip)
    assert within(inner(est), 500.0, 0.03) == 1.0  # without the repair the frame at 0.71 s reads 1 kHz
    run = np.where((t > 0.5) & (t < 1.0), tone(1100.0, 1.5, seed=9), base).astype(np.float32)
    _, est = tracker.track_signal(run)
    assert np.sum(est > HYPERPHONATION_HZ) >= 20


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="f0_min"):
        PitchTracker(f0_min=F0_MAX_HZ, f0_max=F0_MIN_HZ)
    with pytest.raises(ValueError, match="frame_length"):
        PitchTracker(frame_length=160)


def test_cost_per_second_of_crying(tracker):
    """The monitor runs it on ~50 crying frames a second: it must cost well under 1 % of a core
    (< 0.2 ms per frame; measured ~0.02 ms, docs/pitch.md). Best of three: other work only adds."""
    x = with_noise(tone(450.0, 2.0), 20.0)
    centres = 480 + HOP * np.arange(50)
    tracker.track(x, centres)
    best = np.inf
    for _ in range(3):
        start = time.process_time()
        for _ in range(20):
            tracker.track(x, centres)
        best = min(best, (time.process_time() - start) / (20 * 50))
    assert best < 0.2e-3


# ---------------------------------------------------------------------------------------------
# Real cries against Praat


@pytest.fixture(scope="module")
def real_cries(cries_index) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Ten fixed cry files (4 corvin, 4 donateacry, 2 ESC-50, each from a different infant or recording):
    (path, samples, our F0, Praat's F0) per file, every 20 ms frame."""
    parselmouth = pytest.importorskip("parselmouth", reason="needs praat-parselmouth, the reference (pip install -e '.[dev]')")
    from monitor.audio import load_audio

    rows = (pick(cries_index, 4, source="corvin", cry="1") + pick(cries_index, 4, source="donateacry", cry="1")
            + pick(cries_index, 2, source="esc50", cry="1"))
    assert len(rows) == 10
    tracker = PitchTracker()
    out = []
    for row in rows:
        x = load_audio(cry_path(row))
        times, ours = tracker.track_signal(x)
        pitch = parselmouth.Sound(x.astype(np.float64), sampling_frequency=SR).to_pitch_ac(
            time_step=0.005, pitch_floor=F0_MIN_HZ, pitch_ceiling=F0_MAX_HZ)
        nearest = np.clip(np.rint((times - pitch.xs()[0]) / 0.005).astype(int), 0, pitch.n_frames - 1)
        praat = pitch.selected_array["frequency"][nearest]
        out.append((row["path"], x, ours, np.where(praat > 0, praat, np.nan)))
    return out


def test_real_cries_frame_agreement_with_praat(real_cries):
    """On the frames both call voiced: few gross (> 20 %) disagreements, and fine agreement on the rest.
    Measured on these ten files: GPE 4.1 %, median 2.0 cents, voicing agreement 89.6 %, hyperphonation
    decision agreement 99.3 % (on the 100-file sample of docs/pitch.md: 7.4 %, 2.1 cents, 89.5 %, 98.4 %;
    Praat's own two methods, ac and cc, differ by 4.3 % GPE there)."""
    ours = np.concatenate([r[2] for r in real_cries])
    praat = np.concatenate([r[3] for r in real_cries])
    both = ~np.isnan(ours) & ~np.isnan(praat)
    ratio = ours[both] / praat[both]
    gross = np.abs(ratio - 1) > 0.2
    assert both.sum() > 1000
    assert gross.mean() < 0.08
    assert np.median(np.abs(1200 * np.log2(ratio[~gross]))) < 5.0
    assert np.mean(np.isnan(ours) == np.isnan(praat)) > 0.85
    assert np.mean((ours[both] > HYPERPHONATION_HZ) == (praat[both] > HYPERPHONATION_HZ)) > 0.97


def test_real_cries_per_file_median_and_hyperphonation_share(real_cries):
    """Per file, what the monitor reports. Measured: the median F0 within 10 % of Praat's on 8 files of 10
    (85 of 100 in the larger sample); the miss, corvin/AUP_B01 and AMJ_B01, mix a ~500 Hz cry with
    150-280 Hz stretches, so the median flips register on a few frames' voicing or octave. The
    hyperphonation share is within 0.026 of Praat's on every file."""
    close, share_gap = 0, []
    for path, _, ours, praat in real_cries:
        mine, theirs = summarise(ours), summarise(praat)
        assert mine.voiced >= 20 and theirs.voiced >= 20, path
        close += abs(mine.median_hz / theirs.median_hz - 1) < 0.1
        share_gap.append(abs(mine.hyperphonation - theirs.hyperphonation))
    assert close >= 7
    assert max(share_gap) < 0.08, share_gap
