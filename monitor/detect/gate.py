"""The cry-activity gate: the learned detector's frame probabilities → cry runs and type windows.

Timing is decided on frames (20 ms): a run of crying starts where the probability reaches
`Decision.on`, lasts while it stays at or above `Decision.off`, and counts once it has lasted
`min_on_s`; its onset is the run's first frame, not the moment it was confirmed. Types are
decided on 2 s windows, at most one per `[gate] hop_s`: the first window of a run is placed
`onset_lead_s` before the onset so the cry fills most of it, and a window carries audio to the
embedder only when enough of its frames are cry.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from monitor.audio import RingBuffer, blocks_of
from monitor.config import GateSettings
from monitor.detect.crnn import DetectorModel
from monitor.detect.frames import Decision, frame_time
from monitor.detect.pitch import PitchTracker
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES, Activity, CryOnset, Window

_HISTORY_S = 60


_BRIDGE_LOOKBACK_S = 3.0


class RunDecider:
    """Hysteresis with a minimum duration, frame by frame; `step` reports confirmed run starts."""

    def __init__(self, decision: Decision, frame_s: float):
        self.decision = decision
        self._min_frames = max(1, int(round(decision.min_on_s / frame_s)))
        self._bridge = int(round(decision.bridge_s / frame_s))
        self._lookback = int(round(_BRIDGE_LOOKBACK_S / frame_s))
        self._above: deque[bool] = deque(maxlen=self._lookback)  # the latest frames: at or above `off`?
        self._above_off_since: int | None = None  # first frame of the current stretch at or above `off`
        self._seen_on = False  # that stretch reached `on`
        self.active = False  # inside a confirmed run

    def step(self, index: int, probability: float) -> int | None:
        """Frame `index`'s decision; returns the run's first frame when this frame confirms a run."""
        d = self.decision
        self._above.append(probability >= d.off)
        if probability < d.off:
            self._above_off_since, self._seen_on, self.active = None, False, False
            return None
        if self._above_off_since is None:
            self._above_off_since = index
        self._seen_on = self._seen_on or probability >= d.on
        if not self.active and self._seen_on and index - self._above_off_since + 1 >= self._min_frames:
            self.active = True
            return self._bridged_start(self._above_off_since, index)
        return None

    def quiet(self, frames: int) -> None:
        """`frames` frames below `off` in a row: what `step` would make of them, at once."""
        self._above.extend([False] * min(frames, self._lookback))
        self._above_off_since, self._seen_on, self.active = None, False, False

    def pending_start(self, index: int) -> int | None:
        """After frame `index`: the earliest first frame a run not confirmed yet could still be given (an
        unconfirmed stretch at or above `off`, or the last one while a new stretch could bridge back to it);
        None inside a confirmed run or when no such run can follow."""
        if self.active:
            return None
        first = self._bridged_start(self._above_off_since if self._above_off_since is not None else index + 1, index)
        return first if first <= index else None

    def _bridged_start(self, start: int, now: int) -> int:
        """Walk back from `start` over gaps below `off` of at most `bridge` frames, stretch by stretch."""
        oldest = now - len(self._above) + 1

        def above(frame: int) -> bool:
            return frame >= oldest and self._above[frame - oldest]

        first = start
        while True:
            k = first - 1
            while k >= oldest and not above(k) and first - 1 - k < self._bridge:
                k -= 1
            if not above(k):
                return first
            while above(k - 1):
                k -= 1
            first = k


def decide_runs(probs: np.ndarray, decision: Decision, frame_s: float) -> tuple[np.ndarray, list[int]]:
    """A whole probability track at once, exactly as the streaming gate decides it: (active, onset frames)."""
    decider, active, onsets = RunDecider(decision, frame_s), np.zeros(len(probs), bool), []
    above = np.flatnonzero(np.asarray(probs) >= decision.off)
    previous = -1
    for i in above.tolist():  # frames below `off` change nothing but the history: skipped in bulk (fast tuning)
        if i > previous + 1:
            decider.quiet(i - previous - 1)
        previous = i
        first = decider.step(i, float(probs[i]))
        if first is not None:
            onsets.append(first)
            active[first:i] = True
        active[i] = decider.active
    return active, onsets


@dataclass(frozen=True)
class GateOutput:
    activity: Activity | None  # the detector frames decided by this call
    windows: list[Window]


class Gate:
    """Runs the streaming detector over the ring and turns its frames into runs and windows."""

    def __init__(self, settings: GateSettings, detector: DetectorModel, pitch: PitchTracker | None = None):
        self.settings = settings
        self.detector = detector
        self._stream = detector.stream()
        features = detector.features
        self.frame_hop = features.frame_hop
        self._frame_offset = frame_time(0, features)
        self._decider = RunDecider(detector.decision, features.hop_s)
        self._pitch_tracker = pitch or PitchTracker()
        self.hop = int(round(settings.hop_s * SAMPLE_RATE))
        self._lead = int(round(settings.onset_lead_s * SAMPLE_RATE))
        self._min_chunk = int(round(settings.detector_hop_s * SAMPLE_RATE))
        history = _HISTORY_S * SAMPLE_RATE // self.frame_hop
        self._active: deque[bool] = deque(maxlen=history)  # per decided frame, runs back-filled to their onset
        self._frames = 0  # frames decided so far (appended to _active)
        self.fed = 0  # samples given to the detector
        self.next_start = 0
        self._last_start: int | None = None
        self.dropped_windows = 0  # windows skipped because the reader fell behind the ring
        self.skipped = 0  # samples never judged: skipped to catch up with the newest audio
        self.laps = 0  # times the ring overwrote audio before it was read (part of `skipped`)

    @property
    def needed_from(self) -> int:
        """Oldest sample the gate may still read: a writer that can wait must not overwrite it."""
        return min(self.next_start, self.fed)

    def frame_time(self, frame: int) -> int:
        return frame_time(frame, self.detector.features)

    @property
    def decided_to(self) -> int:
        """The sample the detector's decisions reach: how far behind the newest audio this stage is."""
        return self._frames * self.frame_hop

    def advance(self, ring: RingBuffer, final: bool = False, behind_limit: int | None = None) -> GateOutput:
        """Everything decidable from the ring so far; `final` at the end of a recording. A gate more than
        `behind_limit` samples behind the newest audio skips ahead (a live input cannot wait for it)."""
        end = ring.end  # once: the writer may add more while this call reads
        resume = ring.oldest if self.fed < ring.oldest else None  # fell behind the writer: the rest is lost
        if resume is not None:
            self.laps += 1
        if behind_limit is not None and end - self.decided_to > behind_limit:
            resume = end - behind_limit // 4  # what is left of the stall: judged afresh, with a little context
        if resume is not None:
            self._skip_to(resume)
        probs = np.zeros(0, np.float32)
        if end - self.fed >= self._min_chunk or (final and end > self.fed):
            try:
                samples = ring.read(self.fed, end - self.fed)
            except IndexError:  # lapped while reading: the next call resumes at the oldest sample
                return GateOutput(None, [])
            self.fed = end
            probs = self._stream.push(samples)
        if final:
            probs = np.concatenate([probs, self._stream.flush()])
        activity, windows = self._decide(probs, ring)
        if final:
            windows += self._tail_window(ring)
        return GateOutput(activity, windows)

    def outputs_over(self, samples: np.ndarray | Iterable[np.ndarray],
                     block: int = 8 * SAMPLE_RATE) -> Iterator[GateOutput]:
        """Feeds a recording (an array, or a stream of arrays) through a private ring block by
        block, as a source would; the last block is decided as final."""
        assert block + WINDOW_SAMPLES <= _HISTORY_S * SAMPLE_RATE
        ring = RingBuffer(block + 2 * WINDOW_SAMPLES)
        pending = None
        for piece in blocks_of(samples, block):
            if pending is not None:
                ring.write(pending.samples)
                yield self.advance(ring, final=False)
            pending = piece
        if pending is not None:
            ring.write(pending.samples)
        yield self.advance(ring, final=True)

    def _skip_to(self, at: int) -> None:
        """Resume at sample `at` (on the frame grid, never before it: the ring may no longer hold what
        is): the detector starts afresh and the skipped frames count as no cry."""
        frames = max(self._frames, -(-at // self.frame_hop))
        gap_frames = frames - self._frames
        self.skipped += gap_frames * self.frame_hop
        self.dropped_windows += max(0, (frames * self.frame_hop - self.next_start) // self.hop)
        self._active.extend([False] * min(gap_frames, self._active.maxlen or 0))
        self._frames = frames
        self._stream = self.detector.stream()
        self._decider = RunDecider(self.detector.decision, self.detector.features.hop_s)
        self.fed = self._frames * self.frame_hop
        self.next_start = max(self.next_start, self.fed)

    def _decide(self, probs: np.ndarray, ring: RingBuffer) -> tuple[Activity | None, list[Window]]:
        """Frame by frame, so windows come out at the same frames whatever the block size."""
        first = self._frames
        active = np.zeros(len(probs), bool)
        onsets, windows = [], []
        for i, p in enumerate(probs):
            run_first = self._decider.step(first + i, float(p))
            active[i] = self._decider.active
            self._active.append(self._decider.active)
            self._frames += 1
            if run_first is not None:
                onsets.append(CryOnset(self.frame_time(run_first), self.frame_time(first + i + 1)))
                self._backfill(run_first, first + i)
                self._place_window_at(self.frame_time(run_first) - self._lead)
            windows += self._windows(ring, self.frame_time(first + i + 1))
        if not len(probs):
            return None, windows
        pending = self._decider.pending_start(self._frames - 1)
        activity = Activity(self.frame_time(first), self.frame_hop, probs, active, tuple(onsets),
                            None if pending is None else self.frame_time(pending), self._pitch(ring, first, active))
        return activity, windows

    def _pitch(self, ring: RingBuffer, first: int, active: np.ndarray) -> np.ndarray:
        """F0 of this span's crying frames (NaN elsewhere), one batch per span: pitch costs nothing in a quiet room."""
        f0 = np.full(len(active), np.nan, np.float32)
        crying = np.flatnonzero(active)
        if not len(crying):
            return f0
        half = self._pitch_tracker.frame_length // 2
        centres = np.array([self.frame_time(first + int(i)) + self.frame_hop // 2 for i in crying])
        start, end = max(ring.oldest, int(centres[0]) - half), min(ring.end, int(centres[-1]) + half)
        if end <= start:  # the ring no longer holds them: those frames go without pitch
            return f0
        try:
            samples = ring.read(start, end - start)
        except IndexError:  # lapped while reading
            return f0
        f0[crying] = self._pitch_tracker.track(samples, centres - start)
        return f0

    def _backfill(self, run_first: int, confirmed_at: int) -> None:
        """A confirmed run is crying from its first frame on, for the windows that cover it."""
        oldest = self._frames - len(self._active)
        for frame in range(max(run_first, oldest), confirmed_at):
            self._active[frame - oldest] = True

    def _place_window_at(self, start: int) -> None:
        """Re-align the window grid on a new run, keeping at least half a hop after the last window."""
        floor = 0 if self._last_start is None else self._last_start + self.hop // 2
        self.next_start = max(start, floor, 0)

    def _windows(self, ring: RingBuffer, decided_to: int) -> list[Window]:
        windows = []
        while self.next_start + WINDOW_SAMPLES <= decided_to:
            window = self._window_at(ring, self.next_start, self.next_start + WINDOW_SAMPLES)
            if window is not None:
                windows.append(window)
            self._last_start = self.next_start
            self.next_start += self.hop
        return windows

    def _tail_window(self, ring: RingBuffer) -> list[Window]:
        """At the end of a recording: one last window over any tail no window has covered yet."""
        covered = self._last_start + WINDOW_SAMPLES if self._last_start is not None else 0
        if self.fed <= covered:
            return []
        window = self._window_at(ring, max(0, self.fed - WINDOW_SAMPLES), self.fed)
        return [window] if window is not None else []

    def _window_at(self, ring: RingBuffer, start: int, end: int) -> Window | None:
        """Decision for [start, end); `end - start` < 2 s only for a recording shorter than that."""
        oldest = self._frames - len(self._active)
        first = max(0, (start - self._frame_offset) // self.frame_hop)
        last = min(self._frames, max(first, (end - self._frame_offset) // self.frame_hop))
        if first < oldest or start < ring.oldest:
            self.dropped_windows += 1
            return None
        active = [self._active[i - oldest] for i in range(first, last)]
        fraction = float(np.mean(active)) if active else 0.0
        try:
            samples = ring.read(start, min(end, ring.end) - start)
        except IndexError:  # the microphone lapped a reader that fell too far behind
            self.dropped_windows += 1
            return None
        level = _level_dbfs(samples)
        if fraction < self.settings.min_active_fraction:
            return Window(start, fraction, level)
        if len(samples) < WINDOW_SAMPLES:
            samples = np.pad(samples, (0, WINDOW_SAMPLES - len(samples)))
        return Window(start, fraction, level, samples)


def _level_dbfs(samples: np.ndarray) -> float:
    power = float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
    return round(10 * np.log10(power), 1) if power > 1e-12 else -120.0


def gate_recording(samples: np.ndarray, settings: GateSettings, detector: DetectorModel) -> list[Window]:
    """Every window decision over a whole recording, made exactly as the live gate makes them."""
    return [w for output in Gate(settings, detector).outputs_over(samples) for w in output.windows]
