"""The gate on real recordings: cries pass, adult speech and most environmental sounds do not."""
import numpy as np

from monitor.audio import RingBuffer, load_audio
from monitor.config import GateSettings
from monitor.gate import Gate, gate_recording
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES
from tests.conftest import cry_path, pick


def _gated_share(rows) -> float:
    passed = [any(w.gated for w in gate_recording(load_audio(cry_path(r)), GateSettings())) for r in rows]
    return float(np.mean(passed))


def test_real_cries_pass_the_gate(cries_index):
    rows = pick(cries_index, 6, source="corvin") + pick(cries_index, 6, label="crying_baby")
    assert _gated_share(rows) == 1.0


def test_adult_speech_is_held_back(cries_index):
    rows = [r for r in cries_index if r["source"] == "fsdd"][::25]
    assert _gated_share(rows) <= 0.1


def test_environmental_sounds_mostly_held_back(cries_index):
    rows = [r for r in cries_index if r["source"] == "esc50" and r["cry"] == "0"][::10]
    assert _gated_share(rows) <= 0.35


def test_windows_every_hop_with_audio_only_when_gated(cries_index):
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    samples = load_audio(cry_path(row))
    windows = gate_recording(samples, GateSettings(hop_s=0.5))
    assert [w.start for w in windows[:3]] == [0, 8000, 16000]
    for w in windows:
        assert (w.samples is not None) == (w.active_fraction >= 0.25)
        if w.gated:
            np.testing.assert_array_equal(w.samples, samples[w.start : w.start + WINDOW_SAMPLES])


def test_live_feeding_in_small_blocks_gives_the_same_decisions(cries_index):
    [row] = pick(cries_index, 1, label="crying_baby")
    samples = load_audio(cry_path(row))
    gate, ring, live = Gate(GateSettings()), RingBuffer(10 * SAMPLE_RATE), []
    for start in range(0, len(samples), 800):  # 50 ms callback blocks
        ring.write(samples[start : start + 800])
        live.extend(gate.advance(ring))
    batch = gate_recording(samples, GateSettings())
    assert [(w.start, w.active_fraction) for w in live] == [(w.start, w.active_fraction) for w in batch[: len(live)]]


def test_a_short_recording_gets_one_padded_window(cries_index):
    row = next(r for r in cries_index if r["source"] == "fsdd")
    samples = load_audio(cry_path(row))
    assert len(samples) < WINDOW_SAMPLES
    [window] = gate_recording(samples, GateSettings())
    assert window.start == 0 and not window.gated
