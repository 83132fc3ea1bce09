"""The stages after the audio source, built once from settings and shared by both drivers.

`run` (service.py) moves windows through threads; `analyze` (analyze.py) calls the same
methods in a plain loop. A model is therefore evaluated on exactly what the monitor feeds it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from monitor.classify import Classifier, Head, HeadError
from monitor.config import AlertSettings, HearSettings, Settings
from monitor.detect import DetectorModel, Gate
from monitor.embed import OFFLINE_EMBEDDERS, Embedder, EmbedderError, make_embedder, offline_embedder
from monitor.embed.failover import Failover
from monitor.embed.remote import RemoteEmbedder, ServedModelMismatch
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
from monitor.spells import SpellTracker


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
    """Per-stream state: gate (detector, runs, pitch), smoother, crying spells and their alarms."""

    def __init__(self, settings: Settings, models: Models):
        self.models = models
        self.gate = Gate(settings.gate, models.detector)
        self.classifier = Classifier(models.head, settings.classifier.smoothing, settings.alerts)
        self.spells = SpellTracker(settings.episodes, settings.alerts, models.head.classes, self.classifier.rules)
        self._log_embeddings = settings.store.log_embeddings
        self.last_time = 0  # end of the newest window classified

    def reconfigure(self, alerts: AlertSettings) -> None:
        """New alert settings (SIGHUP): checked against the head now (ConfigError), taken up by the thread that
        steps the spells before its next frames or window, so none sees half of them."""
        self.spells.reconfigure(alerts, self.classifier.reconfigure(alerts))

    def observe(self, activity: Activity) -> list[PipelineEvent]:
        """Detector frames: spells open at the cry's first frame, as soon as the run is confirmed."""
        return self.spells.observe(activity)

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
        """Head and evidence in one batch, then smoothing and spells window by window, in order."""
        scored = self.score(embeddings)
        events: list[PipelineEvent] = []
        for embedding, (raw, evidence) in zip(embeddings, scored):
            prediction = self.classifier.step(embedding, raw, evidence)
            spell_events = self.spells.classify(prediction)
            window = prediction.window
            self.last_time = window.end
            smoothed = prediction.smoothed_dict()
            events.append(WindowScored(
                time=window.end, start_s=round(seconds(window.start), 3), level_dbfs=float(window.level_dbfs),
                activity=round(window.active_fraction, 3), gated=window.gated, raw=prediction.raw_dict(),
                smoothed=smoothed, cry=round(1.0 - smoothed[NOT_CRY], 4),
                alerts=tuple(self.spells.active_alerts), evidence=dict(prediction.evidence)))
            if self._log_embeddings and embedding.vector is not None:
                events.append(WindowEmbedded(window.end, round(seconds(window.start), 3), embedding.embedder_id,
                                             np.asarray(embedding.vector, np.float32)))
            events.extend(spell_events)
        return events

    def score(self, embeddings: list[Embedding]) -> list[tuple[np.ndarray | None, dict[str, float]]]:
        """Each vector through the head of the embedder that made it (and its evidence for the alert classes),
        one batch per embedder."""
        scored: list[tuple[np.ndarray | None, dict[str, float]]] = [(None, {})] * len(embeddings)
        for embedder_id in {e.embedder_id for e in embeddings if e.vector is not None}:
            picked = {i: e.vector for i, e in enumerate(embeddings) if e.vector is not None and e.embedder_id == embedder_id}
            head = self.models.head_for(embedder_id)
            vectors = np.stack(list(picked.values()))
            raws = head.predict_proba(vectors)
            evidence = head.window_evidence(vectors, raws, tuple(self.classifier.rules))
            for i, raw, window_evidence in zip(picked, raws, evidence):
                scored[i] = (raw, window_evidence)
        return scored

    def finish(self) -> list[PipelineEvent]:
        return self.spells.finish()
