"""Audio files in: decoding of any wav/flac/ogg to 16 kHz mono float32, and AudioError, which every input raises.

Block by block, so memory does not grow with a file's length; soundfile decodes and soxr resamples.
"""
from __future__ import annotations

import logging
import struct
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
import soundfile
import soxr

from monitor.messages import SAMPLE_RATE, WINDOW_SAMPLES

_LOGGER = logging.getLogger("monitor.audio")  # the journal's name for these lines, as before the package
_EIGHT_BIT = ("PCM_U8", "PCM_S8")  # libsndfile's 8-bit PCM subtypes


class AudioError(RuntimeError):
    """Unusable audio input; the message names the input and the fix."""



def to_mono_16k(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Mix down to mono and resample to 16 kHz with a band-limited (soxr HQ) filter."""
    samples = np.asarray(samples, dtype=np.float32)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        samples = soxr.resample(samples, sample_rate, SAMPLE_RATE, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(samples)


def load_audio(path: str | Path) -> np.ndarray:
    """Decode any wav/flac/ogg file to 16 kHz mono float32 in [-1, 1]."""
    return np.concatenate(list(stream_audio(path)))


def stream_audio(path: str | Path, block_s: float = 8.0,
                 on_nonfinite: Callable[[int], None] | None = None) -> Iterator[np.ndarray]:
    """The file as 16 kHz mono float32 blocks, decoded and resampled block by block, so memory does
    not grow with the file's length. Unreadable or empty files raise AudioError before the first block.
    NaN/Inf samples are set to 0 before resampling (which would smear them); `on_nonfinite` hears how many."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"audio file {path} not found: check the path")
    try:
        handle = soundfile.SoundFile(path)
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise AudioError(f"audio file {path} is not readable audio ({exc}): use wav, flac or ogg") from exc
    if handle.frames == 0:
        handle.close()
        raise AudioError(f"audio file {path} holds no samples: record or choose a non-empty file")
    if handle.subtype in _EIGHT_BIT:  # decoded right (libsndfile centres unsigned 8-bit), but coarse
        _LOGGER.warning("audio file %s is 8-bit (%s): its quantisation hiss, about 48 dB under full scale, is "
                        "outside what the models were trained on and shifts cry types (pain probabilities rise); "
                        "record or convert at 16 bits", path, handle.subtype)
    return _decoded(handle, path, block_s, on_nonfinite, declared_frames(path))


def declared_frames(path: Path) -> int | None:
    """The frame count a WAV (RIFF, RIFX) or AIFF header promises, None for other formats or a header that does
    not say (a streaming writer's placeholder). libsndfile counts only the frames the file holds, so a WAV cut
    short plays as if it were complete; this is what it should have held."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
            if head[:4] in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
                return _wav_frames(f, "<" if head[:4] == b"RIFF" else ">")
            if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
                return _aiff_frames(f)
    except (OSError, struct.error):
        pass  # libsndfile has read the file: an odd header is its business, not a truncation
    return None


def _chunks(f: BinaryIO, order: str) -> Iterator[tuple[bytes, int, int]]:
    """(id, size, offset of the body) of each chunk after a RIFF/AIFF file's 12-byte header."""
    while len(header := f.read(8)) == 8:
        chunk, size = header[:4], struct.unpack(order + "I", header[4:])[0]
        offset = f.tell()
        yield chunk, size, offset
        f.seek(offset + size + (size & 1))  # chunks are padded to an even size


def _wav_frames(f: BinaryIO, order: str) -> int | None:
    block_align = None
    for chunk, size, offset in _chunks(f, order):
        if chunk == b"fmt ":
            block_align = struct.unpack(order + "H", f.read(14)[12:14])[0]
        elif chunk == b"data":
            if not block_align or size in (0, 0xFFFFFFFF):  # unknown, or a placeholder never filled in
                return None
            return size // block_align
    return None


def _aiff_frames(f: BinaryIO) -> int | None:
    for chunk, _size, _offset in _chunks(f, ">"):
        if chunk == b"COMM":
            return struct.unpack(">hI", f.read(6))[1]
    return None


def _decoded(handle: soundfile.SoundFile, path: Path, block_s: float,
             on_nonfinite: Callable[[int], None] | None, declared: int | None) -> Iterator[np.ndarray]:
    """Raises AudioError where the file stops decoding (truncated, corrupt), after the blocks before it, and
    where a WAV or AIFF holds fewer frames than its header declares (`declared`)."""
    rate = handle.samplerate
    resampler = None if rate == SAMPLE_RATE else soxr.ResampleStream(rate, SAMPLE_RATE, 1, dtype="float32",
                                                                        quality="HQ")
    nonfinite = 0
    with handle:
        for block in _blocks_or_fail(handle, path, max(1, int(block_s * rate))):
            mono = block.mean(axis=1, dtype=np.float32)
            bad = ~np.isfinite(mono)
            if bad.any():  # zeroed before resampling, which would smear them over their neighbours
                nonfinite += int(bad.sum())
                mono[bad] = 0.0
                if on_nonfinite is not None:
                    on_nonfinite(int(bad.sum()))
            out = mono if resampler is None else resampler.resample_chunk(mono)
            if len(out):
                yield np.ascontiguousarray(out, dtype=np.float32)
        if resampler is not None:
            tail = resampler.resample_chunk(np.zeros(0, np.float32), last=True)
            if len(tail):
                yield np.ascontiguousarray(tail, dtype=np.float32)
    if nonfinite:
        _LOGGER.warning("audio file %s: %d non-finite samples (NaN/Inf) set to 0", path, nonfinite)
    if declared is not None and declared > handle.frames:
        raise AudioError(f"audio file {path} breaks off after {handle.frames / rate:.1f} s of {declared / rate:.1f} s "
                         "(its header declares more than the file holds): it is truncated or damaged; copy or record "
                         "it again")


def _blocks_or_fail(handle: soundfile.SoundFile, path: Path, block: int) -> Iterator[np.ndarray]:
    read = 0
    blocks = handle.blocks(blocksize=block, dtype="float32", always_2d=True)
    while True:
        try:
            samples = next(blocks)
        except StopIteration:
            return
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            raise AudioError(f"audio file {path} breaks off after {read / handle.samplerate:.1f} s of "
                             f"{handle.frames / handle.samplerate:.1f} s ({exc}): it is truncated or damaged; "
                             "copy or record it again") from exc
        read += len(samples)
        yield samples


def windows_of(samples: np.ndarray, hop: int) -> Iterator[tuple[int, np.ndarray]]:
    """Full 2 s windows every `hop` samples; a recording shorter than 2 s gives one zero-padded window.

    HeAR's card warns that padding moves embeddings, so only the short-file case pads.
    """
    if len(samples) < WINDOW_SAMPLES:
        padded = np.zeros(WINDOW_SAMPLES, dtype=np.float32)
        padded[: len(samples)] = samples
        yield 0, padded
        return
    for start in range(0, len(samples) - WINDOW_SAMPLES + 1, hop):
        yield start, samples[start : start + WINDOW_SAMPLES]
