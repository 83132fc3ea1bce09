"""The shift report's figures, computed from the review log only (episodes, windows, embeddings,
alarms, service events, staff reviews) for a period and, optionally, one bed.

Typed and free of presentation: render.py draws them, `crywatch report --format json` prints them.
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Iterable

import numpy as np
from sqlalchemy import Text, func, select, type_coerce
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from monitor.messages import NOT_CRY
from monitor.store import EpisodeFilter, agreement, list_episodes
from monitor.store.database import AlarmRow, ServiceEventRow, WindowEmbeddingRow, WindowRow, as_utc, run_extents

UNIT = "unit"  # the figures of all beds together
LONG_SPELL_S = 600.0  # "spells over 10 minutes": longer than this from the first cry frame to the last, pauses included
SCORING_INTERVAL = timedelta(hours=3)  # the report counts spells per interval of this, from the period's start
MAP_POINTS = 10_000  # windows drawn on the embedding map at most (an even subsample beyond: the page stays fast)
# The page has a column per hour of its period (six years once made a 20 MB page): a longer period is cut to its
# last MAX_PERIOD, and the page says so.
MAX_PERIOD = timedelta(days=7)
_END_STATES = ("stopped", "failed")  # a run that logged neither is running, or was killed


@dataclass(frozen=True)
class Period:
    since: datetime
    until: datetime
    bed: str | None = None

    @property
    def hours(self) -> float:
        return (self.until - self.since).total_seconds() / 3600


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class EpisodeBar:
    id: int
    bed: str
    start: datetime
    end: datetime  # an episode still open ends at the period's end here
    ongoing: bool
    label: str
    alarm: bool
    interrupted: bool
    verdict: str | None  # staff's latest review
    # The crying spell as logged (0 in a log written before spells were counted):
    length_s: float = 0.0  # first to last cry frame (to the newest while it goes on), pauses included
    crying_s: float = 0.0  # seconds of cry frames: the pauses between bouts not counted
    high_pitch_s: float = 0.0  # voiced crying above 1 kHz (hyperphonation)
    bouts: int = 0

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class AlarmMark:
    id: int
    bed: str
    label: str
    technical: bool
    priority: str
    raised: datetime
    acknowledged: datetime | None
    acknowledged_by: str | None
    silenced: datetime | None
    cleared: datetime | None
    clear_reason: str | None
    announcements: int
    episode_id: int | None
    message: str = ""  # what staff read

    @property
    def response_s(self) -> float | None:
        return None if self.acknowledged is None else (self.acknowledged - self.raised).total_seconds()


@dataclass(frozen=True)
class HourBurden:
    start: datetime
    minutes: dict[str, float]  # minutes crying in this hour, per episode type


@dataclass(frozen=True)
class CryBurden:
    crying_minutes: float
    per_hour: list[HourBurden]
    episodes_by_type: dict[str, int]
    longest: EpisodeBar | None
    longest_s: float | None


@dataclass(frozen=True)
class SpellCounts:
    """The crying spells that started in [start, end)."""

    start: datetime
    end: datetime
    spells: int
    crying_minutes: float  # their crying time: the pauses between bouts not counted
    long_spells: int  # longer than LONG_SPELL_S from the first cry frame to the last
    longest_id: int | None  # the longest spell (first to last cry frame)
    longest_bed: str | None
    longest_s: float | None
    high_pitch_minutes: float  # their voiced crying above 1 kHz: an acoustic sign, not a diagnosis


@dataclass(frozen=True)
class CryingSpells:
    """Spells counted for the whole period and per scoring interval (from the period's start, the last one cut
    at its end): each spell in the interval where it started."""

    period: SpellCounts
    intervals: list[SpellCounts]
    long_spell_s: float
    interval_hours: float
    without_spell_counts: int  # closed spells logged before CryWatch counted spells: no crying time (0) for them


@dataclass(frozen=True)
class Latency:
    acknowledged: int
    median_s: float | None
    p90_s: float | None
    longest_s: float | None


@dataclass(frozen=True)
class AlarmResponse:
    raised: int
    technical: int
    raised_to_acknowledged: Latency
    by_priority: dict[str, Latency]
    never_acknowledged: int
    audio_paused: int  # alarms whose audio someone paused (the log keeps each alarm's last pause)
    announcements: int  # every sounding, the first included
    announced_again: int  # alarms that sounded more than once


@dataclass(frozen=True)
class Verdicts:
    episodes: int
    reviewed: int
    reviewed_share: float | None
    confusion: dict[str, dict[str, int]]  # evaluate-site's table: episodes per staff verdict (rows) and model type
    precision_by_type: dict[str, dict[str, Any]]  # per model type: reviewed, confirmed, precision
    monitored_hours: float
    false_episodes: int  # reviewed "not_cry"
    false_alarms: int  # cry alarms whose episode staff reviewed as "not_cry"
    false_episodes_per_monitored_hour: float | None
    false_alarms_per_monitored_hour: float | None


@dataclass(frozen=True)
class BedFigures:
    bed: str  # or UNIT
    monitored: list[Span]
    gaps: list[Span]  # in the period, no monitor of this bed was running
    technical: list[Span]  # a technical alarm was raised and not yet cleared
    episodes: list[EpisodeBar]
    alarms: list[AlarmMark]
    burden: CryBurden
    spells: CryingSpells
    response: AlarmResponse
    verdicts: Verdicts


@dataclass(frozen=True)
class MapPoint:
    window_id: int
    bed: str
    x: float
    y: float
    type: str  # the model's: the window's most probable smoothed class
    verdict: str | None  # staff's, where the window's episode was reviewed


@dataclass(frozen=True)
class EmbeddingMap:
    embedder_id: str | None
    windows: int  # windows of the period with an embedding from embedder_id
    windows_in_period: int  # gated windows logged in the period, with or without one
    explained_variance: list[float]  # of the two components
    points: list[MapPoint]  # at most MAP_POINTS
    missing: str | None  # why there is no map, for people to read


@dataclass(frozen=True)
class DecisionWindow:
    start: datetime
    seconds: float  # from the episode's start
    activity: float  # share of the window's detector frames that were cry
    smoothed: dict[str, float]


@dataclass(frozen=True)
class Decision:
    """Why the monitor typed (and alarmed on) an episode: the review screen's timeline."""

    episode: EpisodeBar
    windows: list[DecisionWindow]
    thresholds: dict[str, float]  # alarm thresholds of the alert classes (as configured now)
    alarm_raised_s: list[float]  # its alarms, from the episode's start


@dataclass(frozen=True)
class Report:
    period: Period
    generated: datetime
    beds: list[BedFigures]  # the unit first, then each bed
    embedding_map: EmbeddingMap
    decisions: list[Decision]
    decisions_left_out: int  # episodes with an alarm or a review beyond the ones shown
    notes: list[str] = field(default_factory=list)


def _maybe_utc(value: datetime | None) -> datetime | None:
    return None if value is None else as_utc(value)


def _iso(text: str | None) -> datetime | None:
    return None if text is None else as_utc(datetime.fromisoformat(text))


# --- loading ---------------------------------------------------------------------------------


def _episodes(engine: Engine, period: Period) -> list[EpisodeBar]:
    bars = []
    for ep in list_episodes(engine, EpisodeFilter(since=period.since, bed=period.bed)):
        start, end = _iso(ep["start"]), _iso(ep["end"])
        assert start is not None
        if start >= period.until:
            continue
        bars.append(EpisodeBar(ep["id"], ep["bed"], start, min(end, period.until) if end else period.until, end is None,
                               ep["label"], ep["alert"], ep["interrupted"], ep["review"]["verdict"] if ep["review"] else None,
                               ep["length_s"], ep["crying_s"], ep["high_pitch_s"], ep["bouts"]))
    return bars


def _mark(a: AlarmRow) -> AlarmMark:
    return AlarmMark(a.id, a.bed, a.label, a.technical, a.priority, as_utc(a.raised), _maybe_utc(a.acknowledged),
                     a.acknowledged_by, _maybe_utc(a.silenced), _maybe_utc(a.cleared), a.clear_reason, a.announcements,
                     a.episode_id, a.message)


def _alarms(session: Session, period: Period) -> list[AlarmMark]:
    query = (select(AlarmRow).where(AlarmRow.raised < period.until)
             .where(AlarmRow.cleared.is_(None) | (AlarmRow.cleared >= period.since)).order_by(AlarmRow.raised))
    if period.bed is not None:
        query = query.where(AlarmRow.bed == period.bed)
    return [_mark(a) for a in session.scalars(query)]


def spell_alarms(engine: Engine, episode_id: int) -> list[AlarmMark]:
    """The alarms a logged spell raised, in the order raised (an escalated one is a second alarm): the review
    screen's detail."""
    with Session(engine) as session:
        return [_mark(a) for a in session.scalars(select(AlarmRow).where(AlarmRow.episode_id == episode_id)
                                                  .order_by(AlarmRow.raised, AlarmRow.id))]


def _runs(session: Session, period: Period, now: datetime) -> dict[str, list[Span]]:
    """Each bed's runs as spans, clipped to the period: a run lasts from its first to its last logged
    moment, as `evaluate-site` counts monitored time (store.monitored_seconds). A bed's latest run
    that has not logged its end is running: it lasts to the period's end or now, whichever is first
    (windows are logged only while someone cries, so its last moment says nothing about a quiet night)."""
    extents = run_extents(session, period.bed)
    ended = set(session.scalars(select(ServiceEventRow.run_id).where(ServiceEventRow.kind.in_(_END_STATES))))
    latest: dict[str, tuple[datetime, str]] = {}
    for (bed_name, run), (first, _last) in extents.items():
        if bed_name not in latest or first > latest[bed_name][0]:
            latest[bed_name] = first, run
    spans: dict[str, list[Span]] = defaultdict(list)
    for (bed_name, run), (first, last) in extents.items():
        if run not in ended and latest[bed_name][1] == run:
            last = max(last, min(period.until, now))
        start, end = max(first, period.since), min(last, period.until)
        if start < end:
            spans[bed_name].append(Span(start, end))
    return {bed_name: _union(s) for bed_name, s in spans.items()}


def _union(spans: Iterable[Span]) -> list[Span]:
    merged: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        if merged and span.start <= merged[-1].end:
            merged[-1] = Span(merged[-1].start, max(merged[-1].end, span.end))
        else:
            merged.append(span)
    return merged


def _gaps(monitored: list[Span], period: Period) -> list[Span]:
    gaps, cursor = [], period.since
    for span in monitored:
        if span.start > cursor:
            gaps.append(Span(cursor, span.start))
        cursor = max(cursor, span.end)
    if cursor < period.until:
        gaps.append(Span(cursor, period.until))
    return gaps


# --- figures ---------------------------------------------------------------------------------


def _burden(episodes: list[EpisodeBar], period: Period) -> CryBurden:
    first_hour = period.since.replace(minute=0, second=0, microsecond=0)
    hours = [first_hour + timedelta(hours=i) for i in range(int((period.until - first_hour).total_seconds() // 3600) + 1)]
    hours = [h for h in hours if h < period.until]
    minutes: list[dict[str, float]] = [defaultdict(float) for _ in hours]
    for ep in episodes:
        start = max(ep.start, period.since)
        index = int((start - first_hour).total_seconds() // 3600)
        while start < ep.end and index < len(hours):
            stop = min(ep.end, hours[index] + timedelta(hours=1))
            minutes[index][ep.label] += (stop - start).total_seconds() / 60
            start, index = stop, index + 1
    longest = max(episodes, key=lambda ep: ep.seconds, default=None)
    return CryBurden(
        crying_minutes=round(sum(sum(m.values()) for m in minutes), 2),
        per_hour=[HourBurden(h, {k: round(v, 2) for k, v in sorted(m.items())}) for h, m in zip(hours, minutes)],
        episodes_by_type=dict(sorted(Counter(ep.label for ep in episodes).items())),
        longest=longest, longest_s=round(longest.seconds, 1) if longest else None)


def _spell_counts(spells: list[EpisodeBar], start: datetime, end: datetime) -> SpellCounts:
    longest = max(spells, key=lambda ep: ep.length_s, default=None)
    return SpellCounts(start, end, len(spells), round(sum(ep.crying_s for ep in spells) / 60, 2),
                       sum(ep.length_s > LONG_SPELL_S for ep in spells), longest.id if longest else None,
                       longest.bed if longest else None, longest.length_s if longest else None,
                       round(sum(ep.high_pitch_s for ep in spells) / 60, 2))


def _spells(episodes: list[EpisodeBar], period: Period) -> CryingSpells:
    """One pass over the period's spells: each counts in the scoring interval where it started."""
    starts: list[datetime] = []
    while period.since + len(starts) * SCORING_INTERVAL < period.until:
        starts.append(period.since + len(starts) * SCORING_INTERVAL)
    started = [ep for ep in episodes if period.since <= ep.start < period.until]
    buckets: list[list[EpisodeBar]] = [[] for _ in starts]
    for ep in started:
        buckets[(ep.start - period.since) // SCORING_INTERVAL].append(ep)
    return CryingSpells(
        _spell_counts(started, period.since, period.until),
        [_spell_counts(bucket, start, min(start + SCORING_INTERVAL, period.until)) for start, bucket in zip(starts, buckets)],
        LONG_SPELL_S, SCORING_INTERVAL / timedelta(hours=1),
        sum(ep.bouts == 0 and not ep.ongoing for ep in started))


def _latency(alarms: list[AlarmMark]) -> Latency:
    times = np.array([a.response_s for a in alarms if a.response_s is not None], dtype=float)
    if not len(times):
        return Latency(0, None, None, None)
    return Latency(len(times), round(float(np.median(times)), 1), round(float(np.percentile(times, 90)), 1),
                   round(float(times.max()), 1))


def _response(alarms: list[AlarmMark], period: Period) -> AlarmResponse:
    raised = [a for a in alarms if a.raised >= period.since]  # the ones this period answered for
    priorities = sorted({a.priority for a in raised}, key=("high", "medium", "low").index)
    return AlarmResponse(
        raised=len(raised), technical=sum(a.technical for a in raised), raised_to_acknowledged=_latency(raised),
        by_priority={p: _latency([a for a in raised if a.priority == p]) for p in priorities},
        never_acknowledged=sum(a.acknowledged is None for a in raised),
        audio_paused=sum(a.silenced is not None for a in raised),
        announcements=sum(a.announcements for a in raised), announced_again=sum(a.announcements > 1 for a in raised))


def _verdicts(episodes: list[EpisodeBar], alarms: list[AlarmMark], monitored_hours: float) -> Verdicts:
    reviewed = [ep for ep in episodes if ep.verdict is not None]
    verdict_of = {ep.id: ep.verdict for ep in reviewed}
    false_episodes = sum(ep.verdict == NOT_CRY for ep in reviewed)
    false_alarms = sum(not a.technical and verdict_of.get(a.episode_id or -1) == NOT_CRY for a in alarms)
    def per_hour(count: int) -> float | None:
        return round(count / monitored_hours, 3) if monitored_hours else None

    agreed = agreement(Counter((ep.verdict, ep.label) for ep in reviewed))
    return Verdicts(
        episodes=len(episodes), reviewed=len(reviewed),
        reviewed_share=round(len(reviewed) / len(episodes), 3) if episodes else None,
        confusion=agreed["confusion"]["counts"], precision_by_type=agreed["precision_by_type"],
        monitored_hours=round(monitored_hours, 3), false_episodes=false_episodes, false_alarms=false_alarms,
        false_episodes_per_monitored_hour=per_hour(false_episodes), false_alarms_per_monitored_hour=per_hour(false_alarms))


def _bed(name: str, monitored: list[Span], episodes: list[EpisodeBar], alarms: list[AlarmMark], period: Period) -> BedFigures:
    technical = [Span(max(a.raised, period.since), min(a.cleared or period.until, period.until))
                 for a in alarms if a.technical]
    hours = sum(s.seconds for s in monitored) / 3600
    return BedFigures(name, monitored, _gaps(monitored, period), _union(technical), episodes, alarms,
                      _burden(episodes, period), _spells(episodes, period), _response(alarms, period),
                      _verdicts(episodes, alarms, hours))


def _unit(beds: list[BedFigures], period: Period) -> BedFigures:
    """All beds together: monitored hours add up (two beds for an hour = two monitored hours);
    the unit's gaps are where no bed was monitored."""
    episodes = sorted((ep for b in beds for ep in b.episodes), key=lambda ep: ep.start)
    alarms = sorted((a for b in beds for a in b.alarms), key=lambda a: a.raised)
    hours = sum(s.seconds for b in beds for s in b.monitored) / 3600
    anywhere = _union(s for b in beds for s in b.monitored)
    return BedFigures(UNIT, anywhere, _gaps(anywhere, period), _union(s for b in beds for s in b.technical), episodes,
                      alarms, _burden(episodes, period), _spells(episodes, period), _response(alarms, period),
                      _verdicts(episodes, alarms, hours))


def _model_type(smoothed: dict[str, float]) -> str:
    return max(smoothed, key=lambda label: smoothed[label]) if smoothed else NOT_CRY


def _embedding_map(session: Session, period: Period, verdict_of: dict[int, str | None]) -> EmbeddingMap:
    in_period = select(WindowRow.id).where(WindowRow.start >= period.since, WindowRow.start < period.until)
    if period.bed is not None:
        in_period = in_period.where(WindowRow.bed == period.bed)
    windows = session.scalar(select(func.count()).select_from(in_period.subquery())) or 0
    counts = session.execute(select(WindowEmbeddingRow.embedder_id, func.count())
                             .where(WindowEmbeddingRow.window_id.in_(in_period)).group_by(WindowEmbeddingRow.embedder_id).order_by(func.count().desc())).all()
    if not counts:
        why = ("no gated windows were logged in this period" if not windows else
               f"none of the period's {windows} logged windows has an embedding: turn on [store] log_embeddings "
               "(docs/operations.md says what they hold)")
        return EmbeddingMap(None, 0, windows, [], [], why)
    embedder_id = counts[0][0]
    # smoothed as its JSON text: only the windows drawn need it decoded (a third of a busy night's)
    rows = session.execute(select(WindowEmbeddingRow.window_id, WindowEmbeddingRow.vector, WindowRow.bed,
                                  type_coerce(WindowRow.smoothed, Text).label("smoothed"), WindowRow.episode_id)
                           .join(WindowRow, WindowRow.id == WindowEmbeddingRow.window_id)
                           .where(WindowEmbeddingRow.embedder_id == embedder_id, WindowEmbeddingRow.window_id.in_(in_period))
                           .order_by(WindowRow.start)).all()
    if len(rows) < 3:
        return EmbeddingMap(embedder_id, len(rows), windows, [], [],
                            f"only {len(rows)} window(s) with an embedding in this period: a map needs at least 3")
    vectors = np.stack([np.frombuffer(r.vector, "<f4") for r in rows]).astype(np.float64)
    xy, explained = project_2d(vectors)
    keep = np.linspace(0, len(rows) - 1, min(len(rows), MAP_POINTS)).round().astype(int)
    points = [MapPoint(rows[i].window_id, rows[i].bed, round(float(xy[i, 0]), 4), round(float(xy[i, 1]), 4),
                       _model_type(json.loads(rows[i].smoothed)), verdict_of.get(rows[i].episode_id or -1)) for i in keep]
    return EmbeddingMap(embedder_id, len(rows), windows, explained, points, None)


def project_2d(vectors: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """PCA of standardised vectors (the acoustic embedders mix units: Hz, dB, ratios): (n, 2) coordinates
    and the share of variance each component explains. Through the eigenvectors of the (dim, dim)
    covariance rather than an SVD of the (n, dim) data: the same components, 15x faster for a night's
    34,000 windows."""
    scale = vectors.std(axis=0)
    centred = (vectors - vectors.mean(axis=0)) / np.where(scale > 0, scale, 1.0)
    variance, vectors_by_column = np.linalg.eigh(centred.T @ centred)
    order = np.argsort(variance)[::-1]
    variance, components = np.clip(variance[order], 0, None), vectors_by_column[:, order].T
    explained = [round(float(v / variance.sum()), 4) if variance.sum() else 0.0 for v in variance[:2]]
    xy = centred @ components[:2].T
    if xy.shape[1] < 2:  # one-dimensional embeddings: a flat second axis
        xy = np.column_stack([xy, np.zeros(len(xy))])
    return xy, explained + [0.0] * (2 - len(explained))


def _decisions(session: Session, chosen: list[EpisodeBar], alarms: list[AlarmMark],
               thresholds: dict[str, float]) -> list[Decision]:
    by_episode: dict[int, list[DecisionWindow]] = defaultdict(list)
    starts = {ep.id: ep.start for ep in chosen}
    query = (select(WindowRow.episode_id, WindowRow.start, WindowRow.activity, WindowRow.smoothed)
             .where(WindowRow.episode_id.in_(list(starts))).order_by(WindowRow.start))
    for episode_id, start, activity, smoothed in session.execute(query):
        start = as_utc(start)
        by_episode[episode_id].append(DecisionWindow(start, round((start - starts[episode_id]).total_seconds(), 2),
                                                     activity, smoothed))
    return [Decision(ep, by_episode[ep.id], thresholds,
                     [round((a.raised - ep.start).total_seconds(), 2) for a in alarms if a.episode_id == ep.id])
            for ep in chosen]


def build_report(engine: Engine, period: Period, thresholds: dict[str, float], episode_ids: tuple[int, ...] = (),
                 max_decisions: int = 8, now: datetime | None = None) -> Report:
    """The figures of `period`. "Why this decision" is shown for `episode_ids` if given, otherwise for
    the newest episodes that raised an alarm or were reviewed (at most `max_decisions`)."""
    now = now or datetime.now(timezone.utc)
    period, shortened = bounded(period)
    episodes = _episodes(engine, period)
    with Session(engine) as session:
        alarms = _alarms(session, period)
        runs = _runs(session, period, now)
        names = sorted(set(runs) | {ep.bed for ep in episodes} | {a.bed for a in alarms})
        beds = [_bed(name, runs.get(name, []), [ep for ep in episodes if ep.bed == name], [a for a in alarms if a.bed == name],
                     period) for name in names]
        embedding_map = _embedding_map(session, period, {ep.id: ep.verdict for ep in episodes})
        if episode_ids:
            missing = set(episode_ids) - {ep.id for ep in episodes}
            chosen = [ep for ep in episodes if ep.id in episode_ids]
            notes = [f"episode {i} is not in this period or bed: widen --since/--until" for i in sorted(missing)]
        else:
            candidates = [ep for ep in reversed(episodes) if ep.alarm or ep.verdict is not None]
            chosen, notes = sorted(candidates[:max_decisions], key=lambda ep: ep.start), []
        decisions = _decisions(session, chosen, alarms, thresholds)
    left_out = 0 if episode_ids else max(0, len([ep for ep in episodes if ep.alarm or ep.verdict is not None]) - max_decisions)
    return Report(period, now, [_unit(beds, period), *beds], embedding_map, decisions,
                  left_out, [*shortened, *notes])


def bounded(period: Period) -> tuple[Period, list[str]]:
    """`period`, or its last MAX_PERIOD if it is longer, with a note saying so."""
    if period.until - period.since <= MAX_PERIOD:
        return period, []
    kept = replace(period, since=period.until - MAX_PERIOD)
    return kept, [f"The period asked for began {period.since:%Y-%m-%d %H:%M} UTC, {(period.until - period.since).days} "
                  f"days before its end; a report covers at most {MAX_PERIOD.days} days, so this one covers the last "
                  f"{MAX_PERIOD.days} (from {kept.since:%Y-%m-%d %H:%M} UTC). For earlier days, run it again with "
                  "--since and --until."]


def to_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data: times in ISO 8601 UTC, nothing else changed."""
    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return plain(asdict(report))
