import time

import numpy as np
import pytest
import soundfile

from monitor.audio import AudioError, PlaybackSource, RingBuffer, load_audio
from monitor.audio.decode import windows_of
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES


def test_ring_buffer_reads_across_the_wrap_and_refuses_lost_or_future_samples():
    ring = RingBuffer(10)
    ring.write(np.arange(7, dtype=np.float32))
    ring.write(np.arange(7, 14, dtype=np.float32))
    assert ring.end == 14 and ring.oldest == 4
    np.testing.assert_array_equal(ring.read(5, 8), np.arange(5, 13))
    with pytest.raises(IndexError, match="overwritten"):
        ring.read(3, 2)
    with pytest.raises(IndexError, match="not yet written"):
        ring.read(12, 3)


def test_ring_buffer_keeps_the_newest_samples_of_an_oversized_write():
    ring = RingBuffer(4)
    ring.write(np.arange(10, dtype=np.float32))
    assert ring.end == 10
    np.testing.assert_array_equal(ring.read(6, 4), [6, 7, 8, 9])


def test_load_audio_resamples_and_mixes_down(tmp_path):
    rate = 44_100
    t = np.arange(rate) / rate
    stereo = np.stack([np.sin(2 * np.pi * 1000 * t), np.sin(2 * np.pi * 1000 * t)], axis=1) * 0.5
    path = tmp_path / "tone.flac"
    soundfile.write(path, stereo, rate)
    samples = load_audio(path)
    assert samples.dtype == np.float32 and abs(len(samples) - SAMPLE_RATE) <= 1
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(samples)
    assert abs(peak_hz - 1000) < 2
    assert 0.45 < np.max(np.abs(samples[1000:-1000])) < 0.55  # band-limited, no gain change


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(AudioError, match="junk.wav is not readable audio"):
        load_audio(junk)
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), SAMPLE_RATE)
    with pytest.raises(AudioError, match="holds no samples"):
        load_audio(empty)


def test_windows_of_pads_only_recordings_shorter_than_a_window():
    short = np.ones(8000, np.float32)
    [(start, window)] = list(windows_of(short, 16000))
    assert start == 0 and len(window) == WINDOW_SAMPLES and window[8000:].max() == 0
    starts = [s for s, _ in windows_of(np.ones(5 * SAMPLE_RATE, np.float32), SAMPLE_RATE)]
    assert starts == [0, 16000, 32000, 48000]


def test_playback_source_delivers_every_sample_in_order():
    samples = np.arange(3 * SAMPLE_RATE, dtype=np.float32)
    ring = RingBuffer(8 * SAMPLE_RATE)
    source = PlaybackSource(samples, "test", speed=0, block=800)
    source.start(ring)
    for _ in range(200):
        if source.finished:
            break
        time.sleep(0.01)
    assert source.finished and ring.end == len(samples)
    np.testing.assert_array_equal(ring.read(0, len(samples)), samples)


def test_fast_playback_waits_for_a_slow_reader_instead_of_overwriting():
    samples = np.arange(12 * SAMPLE_RATE, dtype=np.float32)
    ring = RingBuffer(6 * SAMPLE_RATE)
    read_up_to = [0]
    source = PlaybackSource(samples, "test", speed=0, block=800)
    source.set_consumer_progress(lambda: read_up_to[0])
    source.start(ring)
    time.sleep(0.3)
    assert not source.finished and ring.end <= ring.capacity - 2 * WINDOW_SAMPLES + 800
    while not source.finished:
        read_up_to[0] = ring.end
        time.sleep(0.01)
    assert ring.end == len(samples)


def test_non_finite_samples_are_silenced_and_counted_where_they_enter(tmp_path):
    ring = RingBuffer(1000)
    block = np.ones(300, np.float32)
    block[10:20] = np.nan
    block[50] = np.inf
    ring.write(block)
    ring.write(np.full(800, np.nan, np.float32))  # wraps around the end of the ring
    assert ring.nonfinite == 811
    kept = ring.read(100, 1000)  # the ring lapped: its oldest sample is 100
    assert np.isfinite(kept).all() and kept[:200].sum() == 200 and not kept[200:].any()
    path = tmp_path / "nan.wav"
    samples = np.sin(np.arange(16000) / 10).astype(np.float32)
    samples[100:200] = np.nan
    soundfile.write(path, samples, 16000, subtype="FLOAT")
    loaded = load_audio(path)
    assert np.isfinite(loaded).all() and np.all(loaded[100:200] == 0) and loaded[300] != 0
