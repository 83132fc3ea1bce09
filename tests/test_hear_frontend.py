"""The torch HeAR front end against the reference's golden outputs (../shared/hear/frontend_golden.npz)."""
from __future__ import annotations

import numpy as np
import pytest

from monitor.embed.base import EmbedderError
from monitor.embed.hear_network import frontend
from tests.hear_standins import GOLDEN, require

CLIPS = ("cryish", "chirp", "noise", "short_1p5s", "speech_padded")


@pytest.fixture(scope="module")
def golden() -> dict[str, np.ndarray]:
    with np.load(require(GOLDEN)) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("name", CLIPS)
def test_matches_reference_per_clip(golden: dict[str, np.ndarray], name: str) -> None:
    ours = frontend(golden[f"input_{name}"][None])
    reference = golden[f"output_{name}"][None]
    assert ours.shape == reference.shape == (1, 1, 192, 128)
    error = np.abs(ours - reference)
    # HEAR.md: float rounding alone moves values by up to ~6e-4, a wrong parameter by 0.1 or more.
    assert error.max() <= 2e-3 and error.mean() <= 5e-5, (error.max(), error.mean())


def test_batch_equals_clips_one_by_one(golden: dict[str, np.ndarray]) -> None:
    batch = np.stack([golden[f"input_{n}"] for n in CLIPS if len(golden[f"input_{n}"]) == 32_000])
    singles = np.concatenate([frontend(clip[None]) for clip in batch])
    np.testing.assert_allclose(frontend(batch), singles, atol=1e-5)


def test_per_clip_normalisation_is_gain_invariant_unlike_the_reference(golden: dict[str, np.ndarray]) -> None:
    pair = golden["input_batch_pair"]  # clip 2 is clip 1 at 1 % gain
    reference = golden["output_batch_pair_reference"]
    ours = frontend(pair)
    assert np.abs(ours[1] - ours[0]).max() < 2e-3  # ours: gain does not matter, whatever the batch
    np.testing.assert_allclose(ours[0], reference[0], atol=2e-3)  # the loud clip sets the reference's range
    # The reference scales the whole batch at once, so the quiet clip's spectrogram changes with its batch-mate.
    assert np.abs(reference[1] - reference[0]).max() > 0.5
    assert np.abs(ours[1] - reference[1]).max() > 0.5


def test_constant_clip_is_silence_not_nan() -> None:
    out = frontend(np.full((2, 32_000), 0.3, np.float32))
    assert np.isfinite(out).all()
    np.testing.assert_array_equal(out, frontend(np.zeros((2, 32_000), np.float32)))


def test_longer_than_two_seconds_is_an_error() -> None:
    with pytest.raises(EmbedderError, match=r"<=32000.*window long audio"):
        frontend(np.zeros((1, 32_001), np.float32))
