"""The stages after the audio source, built once from settings and shared by both drivers.

`run` (service.py) moves windows through threads; `analyze` (analyze.py) calls the same
methods in a plain loop. A model is therefore evaluated on exactly what the monitor feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from monitor.classify import Classifier, Head
from monitor.config import Settings
from monitor.detect import DetectorModel
from monitor.embed import Embedder, make_embedder
from monitor.episodes import EpisodeTracker
from monitor.gate import Gate
from monitor.messages import (
    NOT_CRY,
    Activity,
    Embedding,
    PipelineEvent,
    Window,
    WindowEmbedded,
    WindowScored,
    seconds,
)


@dataclass(frozen=True)
class Models:
    """The loaded detector, embedder and head, checked against each other (the expensive, shareable part)."""

    detector: DetectorModel
    embedder: Embedder
    head: Head

    @staticmethod
    def load(settings: Settings) -> "Models":
        detector = DetectorModel.load(settings.detector.model_path())
        head = Head.load(settings.classifier.head_path())
        embedder = make_embedder(settings)
        head.check_embedder(embedder.id, embedder.dim)
        return Models(detector, embedder, head)


class Pipeline:
    """Per-stream state: gate (detector and runs), smoother, alert hysteresis, episodes."""

    def __init__(self, settings: Settings, models: Models):
        self.models = models
        self.gate = Gate(settings.gate, models.detector)
        self.classifier = Classifier(models.head, settings.classifier.smoothing, settings.alerts)
        self.episodes = EpisodeTracker(settings.episodes, models.head.classes)
        self._log_embeddings = settings.store.log_embeddings
        self.last_time = 0  # end of the newest window classified

    def observe(self, activity: Activity) -> list[PipelineEvent]:
        """Detector frames: episodes open at the cry's first frame, as soon as the run is confirmed."""
        return self.episodes.observe(activity)

    def embed(self, windows: list[Window]) -> list[Embedding]:
        """Embeds the gated windows in one batch; ungated ones pass through without a vector."""
        gated = [w.samples for w in windows if w.samples is not None]
        vectors = iter(self.models.embedder.embed(np.stack(gated)) if gated else [])
        embedder_id = self.models.embedder.id
        return [Embedding(w, next(vectors) if w.gated else None, embedder_id) for w in windows]

    def classify(self, embeddings: list[Embedding]) -> list[PipelineEvent]:
        """Head in one batch, then smoothing, alerts and episodes window by window, in order."""
        with_vectors = [e.vector for e in embeddings if e.vector is not None]
        raws = iter(self.models.head.predict_proba(np.stack(with_vectors)) if with_vectors else [])
        events: list[PipelineEvent] = []
        for embedding in embeddings:
            raw = next(raws) if embedding.vector is not None else None
            prediction, alert_events = self.classifier.step(embedding, raw)
            episode_events = self.episodes.classify(prediction, alert_events)
            window = prediction.window
            self.last_time = window.end
            smoothed = prediction.smoothed_dict()
            events.append(WindowScored(
                time=window.end, start_s=round(seconds(window.start), 3), level_dbfs=float(window.level_dbfs),
                activity=round(window.active_fraction, 3), gated=window.gated, raw=prediction.raw_dict(),
                smoothed=smoothed, cry=round(1.0 - smoothed[NOT_CRY], 4),
                alerts=tuple(self.classifier.active_alerts)))
            if self._log_embeddings and embedding.vector is not None:
                events.append(WindowEmbedded(window.end, round(seconds(window.start), 3), embedding.embedder_id,
                                             np.asarray(embedding.vector, np.float32)))
            events.extend(episode_events)
        return events

    def finish(self) -> list[PipelineEvent]:
        number = self.episodes.current.number if self.episodes.current else None
        # An alert ended by the input's end belongs to the open episode, like any other alert event.
        ended: list[PipelineEvent] = [replace(e, episode=number) for e in self.classifier.finish(self.last_time)]
        return ended + self.episodes.finish()
