"""Audio in: 16 kHz mono float32 from a microphone, a file or a built-in scenario into the ring buffer.

- `decode`: files of any rate and format decoded and resampled, and AudioError, which every input raises;
- `scenario`: the synthetic NICU scenarios (loaded only when one is played: it needs scipy);
- `sources`: the ring buffer and the sources that fill it (microphone, file, scenario);
- `clock`: stream position → wall-clock time, following the wall clock when time sync steps it.

Each module imports only those listed above it.
"""
from monitor.audio.clock import StreamClock
from monitor.audio.decode import AudioError, load_audio, stream_audio
from monitor.audio.sources import (
    InputSpec,
    PlaybackSource,
    RingBuffer,
    Source,
    blocks_of,
    describe_devices,
    open_source,
)

__all__ = ["AudioError", "InputSpec", "PlaybackSource", "RingBuffer", "Source", "StreamClock", "blocks_of",
           "describe_devices", "load_audio", "open_source", "stream_audio"]
