"""Audio in: the ring buffer and the sources (mic, file, scenario) that fill it.

Every source delivers 16 kHz mono float32 into a RingBuffer addressed by absolute sample index.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

import numpy as np

from monitor.audio.decode import AudioError, stream_audio
from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES, Block

if TYPE_CHECKING:
    from sounddevice import InputStream  # sounddevice is loaded lazily at run time, see _sounddevice()


# ---------------------------------------------------------------------------------------------
# Ring buffer


class RingBuffer:
    """Single-writer ring of float32 samples addressed by absolute index.

    The writer (the PortAudio callback) never takes a lock: it copies, then publishes the new end
    index with one attribute store, which is atomic under the GIL. Readers copy and then check
    that the writer did not lap them meanwhile.
    """

    def __init__(self, capacity: int):
        self._data = np.zeros(capacity, dtype=np.float32)
        self.capacity = capacity
        self.end = 0  # absolute index one past the newest sample
        self.nonfinite = 0  # NaN/Inf samples written (and stored as 0): a broken device or file
        self.last_sound = 0  # end of the newest write holding any non-zero sample: a muted input writes none

    @property
    def oldest(self) -> int:
        return max(0, self.end - self.capacity)

    def write(self, samples: np.ndarray) -> None:
        n = len(samples)
        if n > self.capacity:  # only the newest `capacity` samples can survive
            self.end += n - self.capacity
            samples, n = samples[-self.capacity :], self.capacity
        pos = self.end % self.capacity
        first = min(n, self.capacity - pos)
        self._data[pos : pos + first] = samples[:first]
        if first < n:
            self._data[: n - first] = samples[first:]
        for part in (self._data[pos : pos + first], self._data[: n - first]):
            if part.size and not np.isfinite(part).all():  # one NaN would blind every later stage
                bad = ~np.isfinite(part)
                self.nonfinite += int(bad.sum())
                part[bad] = 0.0
        self.end += n
        if samples.any():
            self.last_sound = self.end

    def count_nonfinite(self, count: int) -> None:
        """NaN/Inf samples a decoder set to 0 before they reached the ring: the same fault as written ones."""
        self.nonfinite += count

    def read(self, start: int, count: int) -> np.ndarray:
        """Copy samples [start, start + count); raises if any are in the future or overwritten."""
        if start + count > self.end:
            raise IndexError(f"samples up to {start + count} not yet written (end {self.end})")
        if start < self.oldest:
            raise IndexError(f"samples from {start} already overwritten (oldest {self.oldest})")
        pos = start % self.capacity
        first = min(count, self.capacity - pos)
        out = np.empty(count, dtype=np.float32)
        out[:first] = self._data[pos : pos + first]
        if first < count:
            out[first:] = self._data[: count - first]
        if start < self.end - self.capacity:  # lapped while copying
            raise IndexError(f"samples from {start} overwritten while reading")
        return out


# ---------------------------------------------------------------------------------------------
# Sources


class Source(Protocol):
    """Something that fills a ring buffer until stopped or exhausted."""

    description: str
    live: bool  # True for a microphone: no end, real time
    error: AudioError | None  # why the input broke off (a lost microphone is reported by `finished` instead)

    def start(self, ring: RingBuffer) -> None: ...

    def stop(self) -> None: ...

    @property
    def finished(self) -> bool: ...

    @property
    def overruns(self) -> int: ...


def blocks_of(samples: np.ndarray | Iterable[np.ndarray], block: int) -> Iterator[Block]:
    """Blocks of `block` samples (the last may be shorter) from an array or a stream of arrays."""
    parts = [samples] if isinstance(samples, np.ndarray) else samples
    start, carry = 0, np.zeros(0, np.float32)
    for part in parts:
        carry = np.concatenate([carry, part]) if len(carry) else part
        while len(carry) >= block:
            yield Block(start, carry[:block])
            start, carry = start + block, carry[block:]
    if len(carry):
        yield Block(start, carry)


class PlaybackSource:
    """Plays decoded samples into the ring at `speed` × real time (0 = as fast as the reader keeps up).

    Used for files and scenarios so they exercise the very same threads as the microphone.
    """

    live = False

    def __init__(self, samples: np.ndarray | Iterable[np.ndarray], description: str, speed: float, block: int):
        self._samples = samples  # an array, or a stream of them (a file decoded as it plays)
        self.description = description
        self._speed = speed
        self._block = block
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._consumed: Callable[[], int] = lambda: 0
        self._ring: RingBuffer | None = None
        self.error: AudioError | None = None  # the input broke off midway (a damaged file): it ends early

    @property
    def finished(self) -> bool:
        return self._done.is_set()

    @property
    def overruns(self) -> int:
        return 0

    def set_consumer_progress(self, consumed: Callable[[], int]) -> None:
        """At speed 0, never run further ahead of the consumer than the ring can hold."""
        self._consumed = consumed

    def nonfinite_decoded(self, count: int) -> None:
        """The file's decoder zeroed `count` NaN/Inf samples (it runs in the playback thread, which writes the ring)."""
        if self._ring is not None:
            self._ring.count_nonfinite(count)

    def start(self, ring: RingBuffer) -> None:
        self._ring = ring
        self._thread = threading.Thread(target=self._play, args=(ring,), name="playback", daemon=True)
        self._thread.start()

    def _play(self, ring: RingBuffer) -> None:
        try:
            self._play_blocks(ring)
        except AudioError as exc:
            self.error = exc
        finally:
            self._done.set()  # whatever happened: a reader waiting for more must see the end

    def _play_blocks(self, ring: RingBuffer) -> None:
        t0 = time.monotonic()
        headroom = ring.capacity - 2 * WINDOW_SAMPLES
        for block in blocks_of(self._samples, self._block):
            if self._stop.is_set():
                break
            if self._speed > 0:
                due = t0 + block.start / (SAMPLE_RATE * self._speed)
                self._stop.wait(max(0.0, due - time.monotonic()))
            else:
                while block.end - self._consumed() > headroom and not self._stop.is_set():
                    self._stop.wait(0.002)
            ring.write(block.samples)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


class MicrophoneSource:
    """A sounddevice InputStream whose callback only copies into the ring buffer."""

    live = True
    error: AudioError | None = None  # a device that stops is `finished`: the service reopens it

    def __init__(self, device: str, block: int):
        sounddevice = _sounddevice()
        self._sd = sounddevice
        self._device = resolve_input_device(device)
        self._block = block
        self._overruns = 0
        self._stream: InputStream | None = None
        info = sounddevice.query_devices(self._device, "input")
        self.description = f"microphone {info['name']!r}"

    @property
    def finished(self) -> bool:
        if self._stream is None:
            return False
        try:
            return not self._stream.active
        except self._sd.PortAudioError:  # PortAudio was re-initialised under it (a device rescan)
            return True

    @property
    def overruns(self) -> int:
        return self._overruns

    def start(self, ring: RingBuffer) -> None:
        def callback(indata, frames, time_info, status) -> None:
            # Runs on PortAudio's thread: no locks, no logging, no allocation beyond the copy.
            if status.input_overflow:
                self._overruns += 1
            ring.write(indata[:, 0])

        try:
            self._stream = self._sd.InputStream(
                samplerate=SAMPLE_RATE, channels=1, dtype="float32", blocksize=self._block,
                device=self._device, callback=callback,
            )
            self._stream.start()
        except self._sd.PortAudioError as exc:
            raise AudioError(
                f"cannot open {self.description} at 16 kHz mono ({exc}): pick another with --input mic "
                "and [audio] device (list them with `crywatch devices`)"
            ) from exc

    def stop(self) -> None:
        """Idempotent, and safe on a stream whose device vanished or whose PortAudio was re-initialised."""
        if self._stream is not None and not self._stream.closed:
            try:
                self._stream.stop()
                self._stream.close()
            except self._sd.PortAudioError:
                pass  # the device is gone already: nothing left to release


def _sounddevice():
    """PortAudio is loaded only when a microphone is really used (files and scenarios need none)."""
    try:
        import sounddevice
    except OSError as exc:
        raise AudioError(f"PortAudio is not installed ({exc}): apt-get install libportaudio2, "
                         "then check `crywatch devices`") from exc
    return sounddevice


def resolve_input_device(device: str) -> int | None:
    """Map the config's device (index, name substring or "") to a PortAudio index, or fail clearly."""
    sounddevice = _sounddevice()
    try:
        devices = sounddevice.query_devices()
    except sounddevice.PortAudioError as exc:
        raise AudioError(f"PortAudio cannot list audio devices ({exc}): is libportaudio2 installed?") from exc
    inputs = [i for i, d in enumerate(devices) if d["max_input_channels"] > 0]
    if not inputs:
        raise AudioError("no microphone found: connect one, then check `crywatch devices`")
    if device == "":
        default = sounddevice.default.device[0]
        if default is None or default < 0 or default not in inputs:
            return inputs[0]
        return int(default)
    if device.isdigit():
        index = int(device)
        if index not in inputs:
            raise AudioError(f"audio device {index} is not an input: see `crywatch devices` for [audio] device")
        return index
    matches = [i for i in inputs if device.lower() in devices[i]["name"].lower()]
    if not matches:
        raise AudioError(f"no input device matches {device!r}: see `crywatch devices` for [audio] device")
    return matches[0]


def describe_devices() -> str:
    sounddevice = _sounddevice()
    try:
        devices = sounddevice.query_devices()
    except sounddevice.PortAudioError as exc:
        return f"PortAudio cannot list audio devices ({exc}): is libportaudio2 installed?"
    lines = []
    default_in = sounddevice.default.device[0]
    for i, d in enumerate(devices):
        if d["max_input_channels"] > 0:
            mark = "*" if i == default_in else " "
            lines.append(f"{mark} {i:3d}  {d['name']}  ({d['max_input_channels']} ch, {d['default_samplerate']:.0f} Hz)")
    if not lines:
        return "no input devices found (no microphone): connect one, or run `crywatch run --input scenario:nicu`"
    return "input devices (* = default; use the index or part of the name as [audio] device):\n" + "\n".join(lines)


@dataclass(frozen=True)
class InputSpec:
    kind: str  # mic | file | scenario
    value: str  # device, path or scenario name

    @staticmethod
    def parse(text: str, device: str) -> "InputSpec":
        if text == "mic":
            return InputSpec("mic", device)
        if text.startswith("scenario:"):
            return InputSpec("scenario", text.split(":", 1)[1])
        return InputSpec("file", text)


def open_source(spec: InputSpec, speed: float, block_ms: int, rescan: bool = False) -> Source:
    """`rescan`: re-read the system's devices first (PortAudio lists them once), to find a
    microphone that was unplugged and is back."""
    block = SAMPLE_RATE * block_ms // 1000
    if spec.kind == "mic":
        if rescan:
            sounddevice = _sounddevice()
            sounddevice._terminate()  # sounddevice's documented way to refresh the device list
            sounddevice._initialize()
        return MicrophoneSource(spec.value, block)
    if spec.kind == "scenario":
        from monitor.audio.scenario import render_scenario

        scenario = render_scenario(spec.value)
        return PlaybackSource(scenario.samples, scenario.description, speed, block)
    def nonfinite(count: int) -> None:  # the bad_audio alarm, as for a microphone
        source.nonfinite_decoded(count)

    source = PlaybackSource(stream_audio(spec.value, on_nonfinite=nonfinite), f"file {spec.value}", speed, block)
    return source
