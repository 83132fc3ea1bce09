"""Embedder backends and the factory that picks one from settings.

- `base`: the Embedder interface, its window contract and EmbedderError;
- `acoustic`, `acoustic_v2`: the offline, hand-crafted cry features (acoustic-v1, acoustic-v2);
- `hear`: Google HeAR, its weights found or fetched, on the TensorFlow or the torch backend;
- `hear_network`: HeAR's network (front end and ViT) in torch, for the torch backend;
- `remote`: HeAR served for a unit by `crywatch serve-embedder`; `failover`: the offline fallback while it is down.
"""
from __future__ import annotations

from monitor.config import Settings
from monitor.embed.base import Embedder, EmbedderError, check_windows

__all__ = ["Embedder", "EmbedderError", "check_windows", "make_embedder", "offline_embedder", "OFFLINE_EMBEDDERS"]

OFFLINE_EMBEDDERS = ("acoustic-v1", "acoustic-v2")


def make_embedder(settings: Settings) -> Embedder:
    name = settings.classifier.embedder
    if name == "hear" and settings.hear.backend == "remote":
        from monitor.embed.remote import RemoteEmbedder

        hear = settings.hear
        return RemoteEmbedder(hear.url, hear.timeout_s, hear.ca_file)  # asks the server which model it serves
    if name == "hear":
        from monitor.embed.hear import load_hear  # torch/TF are imported only when HeAR is asked for

        return load_hear(settings.hear)
    return offline_embedder(name)


def offline_embedder(name: str) -> Embedder:
    if name == "acoustic-v1":
        from monitor.embed.acoustic import AcousticEmbedder

        return AcousticEmbedder()
    if name == "acoustic-v2":
        from monitor.embed.acoustic_v2 import AcousticV2Embedder

        return AcousticV2Embedder()
    raise EmbedderError(
        f"unknown embedder {name!r} (config key classifier.embedder): use 'hear' or one of {', '.join(OFFLINE_EMBEDDERS)}"
    )
