"""What the dashboard knows about each bed, rebuilt from bus messages (pure, no Textual)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

_RECENT = 10


@dataclass(frozen=True)
class BedView:
    bed: str
    health: str = "waiting for the monitor"
    source: str = ""
    embedder: str = ""
    head: str = ""
    level_dbfs: float | None = None
    activity: float = 0.0
    cry: float = 0.0
    probs: dict[str, float] = field(default_factory=dict)
    alerts: tuple[str, ...] = ()
    unsupported: tuple[str, ...] = ()
    episode: dict[str, Any] | None = None  # the open episode, if any
    recent: tuple[dict[str, Any], ...] = ()  # closed episodes, newest last
    last_time: str = ""


def apply(view: BedView, message: dict[str, Any]) -> BedView:
    kind, data = message["type"], message["data"]
    view = replace(view, last_time=message["time"])
    if kind == "status":
        return replace(view, health=data["health"], source=data["source"], embedder=data["embedder"],
                       head=data["head"], alerts=tuple(data["alerts"]), episode=data["episode"],
                       unsupported=tuple(data["unsupported_alert_classes"]),
                       recent=tuple(data["recent"])[-_RECENT:] or view.recent)
    if kind == "window":
        return replace(view, level_dbfs=data["level_dbfs"], activity=data["activity"], cry=data["cry"],
                       probs=data["smoothed"], alerts=tuple(data["alerts"]))
    if kind in ("episode_opened", "episode_updated"):
        return replace(view, episode=data)
    if kind == "episode_closed":
        return replace(view, episode=None, recent=(view.recent + (data,))[-_RECENT:])
    if kind == "alert_raised":
        return replace(view, alerts=tuple(sorted(set(view.alerts) | {data["label"]})))
    if kind == "alert_cleared":
        return replace(view, alerts=tuple(a for a in view.alerts if a != data["label"]))
    if kind == "health":
        state = data["state"]
        health = {"audio_stalled": "MICROPHONE SILENT", "worker_failed": "MONITOR FAILED: " + data.get("error", ""),
                  "service_stopped": "monitor stopped", "audio_resumed": "ok", "service_started": "ok"}
        return replace(view, health=health.get(state, state))
    return view
