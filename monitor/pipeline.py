"""The stages after the audio source, built once from settings and shared by both drivers.

`run` (service.py) moves windows through threads; `analyze` (analyze.py) calls the same
methods in a plain loop. A model is therefore evaluated on exactly what the monitor feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from monitor.classify import Classifier, Head, HeadError
from monitor.config import HearSettings, Settings
from monitor.detect import DetectorModel, Gate
from monitor.embed import OFFLINE_EMBEDDERS, Embedder, EmbedderError, make_embedder, offline_embedder
from monitor.embed.failover import Failover
from monitor.embed.remote import RemoteEmbedder, ServedModelMismatch
from monitor.episodes import EpisodeTracker
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
    """The loaded detector, embedder and head, checked against each other (the expensive, shareable part).

    With a remote embedder, `failover` also holds the offline fallback, typed by `fallback_head`.
    """

    detector: DetectorModel
    embedder: Embedder
    head: Head
    failover: Failover | None = None
    fallback_head: Head | None = None

    @staticmethod
    def load(settings: Settings) -> "Models":
        detector = DetectorModel.load(settings.detector.model_path())
        head = Head.load(settings.classifier.head_path())
        if settings.classifier.embedder == "hear" and settings.hear.backend == "remote":
            return Models.with_server(detector, head, settings.hear)
        embedder = make_embedder(settings)
        head.check_embedder(embedder.id, embedder.dim)
        return Models(detector, embedder, head)

    @staticmethod
    def with_server(detector: DetectorModel, head: Head, hear: HearSettings) -> "Models":
        """The server must serve the model the head was trained on; a down server is not an error at start."""
        if not head.embedder_id.startswith("hear-"):
            raise HeadError(f"[classifier] head {head.name!r} was trained on {head.embedder_id!r}, not on HeAR: a remote "
                            "HeAR server needs a head trained on its vectors (hear-torch@<commit>)")
        fallback_head = Head.load(hear.fallback_head_path())
        if fallback_head.embedder_id not in OFFLINE_EMBEDDERS:
            raise HeadError(f"[hear] fallback_head {fallback_head.name!r} was trained on {fallback_head.embedder_id!r}: "
                            f"the fallback runs on this PC, so it needs a head of {' or '.join(OFFLINE_EMBEDDERS)}")
        if fallback_head.classes != head.classes:
            raise HeadError(f"[hear] fallback_head {fallback_head.name!r} has classes {', '.join(fallback_head.classes)} "
                            f"but the head has {', '.join(head.classes)}: the alarms would change meaning when the "
                            "server fails; use heads with the same classes")
        remote = RemoteEmbedder(hear.url, hear.timeout_s, hear.ca_file, expected_id=head.embedder_id, dim=head.dim)
        failover = Failover(remote, offline_embedder(fallback_head.embedder_id))
        try:
            remote.info()
        except ServedModelMismatch as exc:
            raise HeadError(f"[hear] url: {exc}") from exc  # a setup error, not a fault to ride out
        except EmbedderError as exc:
            failover.failed(str(exc))  # down at start: the monitor starts on the fallback, the service raises the alarm
        return Models(detector, remote, head, failover, fallback_head)

    def head_for(self, embedder_id: str) -> Head:
        if self.failover is not None and self.fallback_head is not None and embedder_id == self.failover.fallback.id:
            return self.fallback_head
        return self.head


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
        embedder_id = self.models.embedder.id
        if not gated:
            return [Embedding(w, None, embedder_id) for w in windows]
        if self.models.failover is not None:  # the server, or the fallback for the whole batch
            stacked, embedder_id = self.models.failover.embed(np.stack(gated))
        else:
            stacked = self.models.embedder.embed(np.stack(gated))
        vectors = iter(stacked)
        return [Embedding(w, next(vectors) if w.gated else None, embedder_id) for w in windows]

    def classify(self, embeddings: list[Embedding]) -> list[PipelineEvent]:
        """Head in one batch, then smoothing, alerts and episodes window by window, in order."""
        raws = self._raw_probabilities(embeddings)
        events: list[PipelineEvent] = []
        for embedding, raw in zip(embeddings, raws):
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

    def _raw_probabilities(self, embeddings: list[Embedding]) -> list[np.ndarray | None]:
        """Each vector through the head of the embedder that made it, one batch per embedder."""
        raws: list[np.ndarray | None] = [None] * len(embeddings)
        for embedder_id in {e.embedder_id for e in embeddings if e.vector is not None}:
            picked = {i: e.vector for i, e in enumerate(embeddings) if e.vector is not None and e.embedder_id == embedder_id}
            head = self.models.head_for(embedder_id)
            for i, raw in zip(picked, head.predict_proba(np.stack(list(picked.values())))):
                raws[i] = raw
        return raws

    def finish(self) -> list[PipelineEvent]:
        number = self.episodes.current.number if self.episodes.current else None
        # An alert ended by the input's end belongs to the open episode, like any other alert event.
        ended: list[PipelineEvent] = [replace(e, episode=number) for e in self.classifier.finish(self.last_time)]
        return ended + self.episodes.finish()
