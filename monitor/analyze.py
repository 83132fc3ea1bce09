"""The batch driver: the live pipeline's stages in a plain loop, as fast as the CPU allows."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from monitor.audio import stream_audio
from monitor.audio.scenario import render_scenario
from monitor.config import Settings
from monitor.messages import (
    NOT_CRY,
    SAMPLE_RATE,
    EpisodeClosed,
    EpisodeSummary,
    EpisodeUpdated,
    PipelineEvent,
    WindowScored,
    type_probability,
)
from monitor.pipeline import Models, Pipeline


def analyze_samples(samples: np.ndarray | Iterable[np.ndarray], settings: Settings,
                    models: Models) -> tuple[list[PipelineEvent], dict[str, Any]]:
    """All events for one recording (an array, or a stream of blocks), and the per-file summary
    `crywatch analyze` prints."""
    pipeline = Pipeline(settings, models)
    events: list[PipelineEvent] = []
    raws: list[np.ndarray] = []
    heard = [0]

    def counted(parts: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for part in parts:
            heard[0] += len(part)
            yield part

    for output in pipeline.gate.outputs_over(counted([samples] if isinstance(samples, np.ndarray) else samples)):
        # Frames first: an episode exists before the windows that type it, as in the live driver.
        new = pipeline.observe(output.activity) if output.activity is not None else []
        new += pipeline.classify(pipeline.embed(output.windows))
        raws.extend(np.array(list(e.raw.values())) for e in new if isinstance(e, WindowScored) and e.raw)
        events.extend(new)
    events.extend(pipeline.finish())
    classes = models.head.classes
    if raws:
        mean = np.mean(raws, axis=0)
        mean_of = {c: round(float(p), 4) for c, p in zip(classes, mean)}
        probs: dict[str, float | None] = {**mean_of, "cry": round(1.0 - mean_of[NOT_CRY], 4)}
    else:  # nothing passed the gate: no evidence of any cry type
        probs = {c: None for c in classes}
        probs[NOT_CRY], probs["cry"] = 1.0, 0.0
    closed: dict[int, EpisodeSummary] = {}  # the last word on each: a closed episode may be updated late
    for e in events:
        if isinstance(e, (EpisodeClosed, EpisodeUpdated)) and not e.episode.ongoing:
            closed[e.episode.number] = e.episode
    episodes = [
        {"start_s": ep.start_s, "end_s": ep.end_s, "detected_s": ep.detected_s, "label": ep.label, "probs": ep.probs,
         "peak": ep.peak, "windows": ep.windows, "crying_s": ep.crying_s, "bouts": ep.bouts,
         "f0_median_hz": ep.f0_median_hz, "high_pitch_s": ep.high_pitch_s, "high_pitch_share": ep.high_pitch_share,
         "evidence": ep.evidence,
         "alert": bool(ep.alarms), "alerts": list(ep.alerts),
         "alarms": [{"kind": a.kind, "raised_s": a.raised_s, **({"priority": a.priority} if a.priority else {})}
                    for a in ep.alarms]}
        for ep in closed.values()
    ]
    summary = {
        "duration_s": round(heard[0] / SAMPLE_RATE, 3),
        "windows": sum(isinstance(e, WindowScored) for e in events),
        "gated_windows": len(raws),
        "probs": probs,
        "episodes": episodes,
    }
    return events, summary


def analyze_file(path: str | Path, settings: Settings, models: Models) -> dict[str, Any]:
    """A recording, or a built-in scenario (scenario:NAME) as `crywatch run --input` takes it."""
    if str(path).startswith("scenario:"):
        samples: np.ndarray | Iterable[np.ndarray] = render_scenario(str(path).split(":", 1)[1]).samples
    else:
        samples = stream_audio(path)
    _events, summary = analyze_samples(samples, settings, models)
    return {"path": str(path), **summary}


def describe(result: dict[str, Any]) -> str:
    """One human line per file."""
    if "error" in result:
        return f"{result['path']}: ERROR {result['error']}"
    episodes = result["episodes"]
    parts = [f"{result['path']}: {result['duration_s']:.1f} s, cry {result['probs']['cry']:.2f}, "
             f"{len(episodes)} episode{'s' if len(episodes) != 1 else ''}"]
    for ep in episodes:
        alarms = "".join(f" {a['kind'].upper()}@{a['raised_s']:.1f}s" for a in ep["alarms"])
        parts.append(f"  {ep['start_s']:7.1f}-{ep['end_s']:7.1f} s  {ep['label']:<12} "
                     f"p={type_probability(ep['probs'], ep['label'])}  crying {ep['crying_s']:.0f} s{alarms}")
    return "\n".join(parts)

