"""`crywatch report` on a real log: the monitor over a real pain cry (acknowledged through the control
channel) and over the built-in scenario, an episode annotated with `crywatch annotate`; its JSON checked
against counts made from the SQLite file directly, its page opened in headless Chromium."""
import contextlib
import io
import json
import logging
import re
import shutil
import subprocess
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from html import escape as html_escape
from pathlib import Path

import numpy as np
import pytest
import soundfile
from PIL import Image
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from monitor.audio import load_audio
from monitor.bus import Envelope, Subscriber
from monitor.bus.control import ControlRequest, send_request
from monitor.cli import main
from monitor.config import settings_from_dict
from monitor.messages import (
    Alarm,
    AlarmAcknowledged,
    AlarmRaised,
    EpisodeClosed,
    EpisodeOpened,
    EpisodeSummary,
    EpisodeUpdated,
    Priority,
    ServiceStatus,
    SpellAlarm,
)
from monitor.report import alarm_thresholds
from monitor.report.figures import LONG_SPELL_S, Period, build_report, to_json
from monitor.report.render import MAP_BACKGROUND, TIMELINE_BACKGROUND, render_html
from monitor.service import Service
from monitor.store import StoreWriter, annotate, open_engine
from monitor.store.database import AlarmRow, AnnotationRow, EpisodeRow, WindowEmbeddingRow, WindowRow, as_utc
from tests.conftest import cry_path, free_endpoint, pick, run_crywatch, wait_for_event
from train.heads.site import evaluate_site


def _report_json(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["report", "--format", "json", *args])
    return code, json.loads(out.getvalue()) if code == 0 else {}


@pytest.fixture(scope="module")
def shift(settings, models, cries_index, tmp_path_factory):
    """One log for the module: bed-a cried (a vaccination cry, its crying alarm acknowledged by JD, the spell
    confirmed as pain with `crywatch annotate`), bed-b ran the nicu scenario (alarm never acknowledged, reviewed as
    not a cry)."""
    folder = tmp_path_factory.mktemp("report")
    url = f"sqlite:///{folder / 'log.db'}"
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    clip = folder / "cry-then-silence.wav"  # the silence keeps the monitor up until the test has acknowledged
    soundfile.write(clip, np.concatenate([load_audio(cry_path(row)), np.zeros(60 * 16_000, np.float32)]), 16_000)
    service = Service(settings.with_overrides(  # a cry alone is a short spell: its crying alarm comes after 5 s
        audio={"input": str(clip), "speed": 2.0}, store={"url": url, "log_embeddings": True},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-a"}, alerts={"crying_s": 5.0}), models=models)
    subscriber = Subscriber([service.bus_endpoint])
    runner = threading.Thread(target=service.run)
    runner.start()
    try:
        events: list = []
        deadline = time.monotonic() + 30
        alarm = wait_for_event(subscriber, AlarmRaised, events, deadline, "no alarm for a real cry").alarm
        assert send_request(service.control_endpoint, ControlRequest("acknowledge", "jd", alarm.id)).ok
        wait_for_event(subscriber, AlarmAcknowledged, events, deadline, "the acknowledgement was not published")
    finally:
        service.request_stop()
        runner.join(timeout=60)
        subscriber.close()
    scenario = Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 0.0}, store={"url": url, "log_embeddings": True},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-b"}), models=models)
    assert scenario.run().failed is None
    engine = open_engine(url)
    with Session(engine) as session:
        first = {bed: session.scalar(select(EpisodeRow.id).where(EpisodeRow.bed == bed).order_by(EpisodeRow.id))
                 for bed in ("bed-a", "bed-b")}
    annotated = run_crywatch("annotate", str(first["bed-a"]), "pain", "--by", "JD", "--note", "confirmed", "--db", url)
    assert annotated.returncode == 0, annotated.stderr
    annotate(engine, first["bed-b"], "not_cry", "AB", "the scenario's synthetic cry")
    until = datetime.now(timezone.utc) + timedelta(minutes=10)  # at speed 0 the scenario's clock runs ahead
    window = ("--db", url, "--since", since.isoformat(), "--until", until.isoformat())
    page = run_crywatch("report", *window, "--out", str(folder / "report.html"), timeout=180)
    assert page.returncode == 0, page.stderr
    code, figures = _report_json(*window)
    assert code == 0
    return {"engine": engine, "url": url, "folder": folder, "page": page, "json": figures,
            "period": Period(since, until), "window": window, "episodes": first}


def _bed(figures: dict, name: str) -> dict:
    return next(b for b in figures["beds"] if b["bed"] == name)


def test_the_json_figures_are_the_logs_own_counts(shift, settings):
    figures, engine = shift["json"], shift["engine"]
    assert [b["bed"] for b in figures["beds"]] == ["unit", "bed-a", "bed-b"]
    with Session(engine) as session:
        for bed in ("bed-a", "bed-b"):
            figured = _bed(figures, bed)
            episodes = session.scalar(select(func.count()).select_from(EpisodeRow).where(EpisodeRow.bed == bed))
            alarms = session.scalars(select(AlarmRow).where(AlarmRow.bed == bed)).all()
            assert figured["verdicts"]["episodes"] == len(figured["episodes"]) == episodes >= 1
            assert figured["response"]["raised"] == len(alarms) >= 1
            assert figured["response"]["never_acknowledged"] == sum(a.acknowledged is None for a in alarms)
            assert figured["response"]["announcements"] == sum(a.announcements for a in alarms)
            crying = sum((e.end - e.start).total_seconds() for e in session.scalars(
                select(EpisodeRow).where(EpisodeRow.bed == bed))) / 60
            assert figured["burden"]["crying_minutes"] == pytest.approx(crying, abs=0.02)
        [acknowledged] = session.scalars(select(AlarmRow).where(AlarmRow.acknowledged.is_not(None))).all()
        reviews = session.scalar(select(func.count(func.distinct(AnnotationRow.episode_id))))
        embeddings = session.scalar(select(func.count()).select_from(WindowEmbeddingRow))
    bed_a, bed_b, unit = _bed(figures, "bed-a"), _bed(figures, "bed-b"), _bed(figures, "unit")
    # bed-a: JD acknowledged the pain alarm through the control channel, then confirmed the episode
    assert acknowledged.bed == "bed-a" and acknowledged.acknowledged_by == "JD"
    latency = bed_a["response"]["by_priority"][acknowledged.priority]
    assert latency["acknowledged"] == 1 and latency["longest_s"] == pytest.approx(
        (acknowledged.acknowledged - acknowledged.raised).total_seconds(), abs=0.1)
    assert bed_a["verdicts"]["confusion"]["pain"][bed_a["episodes"][0]["label"]] == 1
    # bed-b: nobody acknowledged; staff said not a cry, so its alarm was a false one
    assert bed_b["response"]["never_acknowledged"] == bed_b["response"]["raised"]
    assert bed_b["verdicts"]["false_episodes"] == 1 and bed_b["verdicts"]["false_alarms"] >= 1
    # the unit: the beds added up, and evaluate-site's figures on the same log
    assert unit["verdicts"]["reviewed"] == reviews == 2
    site = evaluate_site(engine)
    assert unit["verdicts"]["confusion"] == site["confusion"]["counts"]
    assert unit["verdicts"]["monitored_hours"] == pytest.approx(site["monitored_hours"], abs=0.002)
    assert unit["verdicts"]["false_episodes"] == site["false_episodes"]
    assert figures["embedding_map"]["windows"] == len(figures["embedding_map"]["points"]) == embeddings >= 10
    assert figures["embedding_map"]["missing"] is None
    with Session(engine) as session:  # coloured by verdict where the window's episode was reviewed
        in_reviewed = session.scalar(select(func.count()).select_from(WindowEmbeddingRow)
                                     .join(WindowRow, WindowRow.id == WindowEmbeddingRow.window_id)
                                     .where(WindowRow.episode_id.in_(select(AnnotationRow.episode_id))))
    verdicts = [p["verdict"] for p in figures["embedding_map"]["points"]]
    assert {"pain", "not_cry"} <= set(verdicts) and sum(v is not None for v in verdicts) == in_reviewed
    # why this decision: both alarmed, reviewed episodes, with their windows and the thresholds in force
    decided = {d["episode"]["id"]: d for d in figures["decisions"]}
    assert set(shift["episodes"].values()) <= set(decided)
    assert all(d["episode"]["alarm"] or d["episode"]["verdict"] for d in decided.values())
    assert decided[shift["episodes"]["bed-a"]]["windows"] and decided[shift["episodes"]["bed-a"]]["alarm_raised_s"]
    assert decided[shift["episodes"]["bed-a"]]["thresholds"] == alarm_thresholds(settings)


def test_the_page_is_one_self_contained_file(shift):
    path = Path(shift["page"].stdout.strip())
    assert path == (shift["folder"] / "report.html").resolve() and path.is_file()
    html = path.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html  # nothing to fetch
    images = html.count('src="data:image/png;base64,')
    assert images == html.count("<img") == 3 + len(shift["json"]["decisions"])  # timeline, burden, map, decisions
    assert 'id="map-figure"' in html and 'id="timeline-figure"' in html and "bed-a" in html and "bed-b" in html


def test_an_empty_period_and_a_log_without_embeddings_are_clear_pages(settings, models, tmp_path):
    """No cry data needed: the built-in scenario, logged with [store] log_embeddings off."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    assert Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 0.0}, store={"url": url, "log_embeddings": False},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-c"}), models=models).run().failed is None
    engine, thresholds = open_engine(url), alarm_thresholds(settings)
    empty = build_report(engine, Period(datetime(2020, 1, 1, tzinfo=timezone.utc), datetime(2020, 1, 1, 12, tzinfo=timezone.utc)),
                         thresholds)
    html = render_html(empty)
    assert 'id="empty-period"' in html and "no gated windows were logged in this period" in html
    assert to_json(empty)["beds"][0]["verdicts"]["episodes"] == 0
    bare = build_report(engine, Period(since, datetime.now(timezone.utc) + timedelta(minutes=10)), thresholds)
    figures = to_json(bare)
    assert figures["beds"][0]["verdicts"]["episodes"] == 1 and figures["embedding_map"]["points"] == []
    assert "turn on [store] log_embeddings" in figures["embedding_map"]["missing"]
    html = render_html(bare)
    assert 'id="map-missing"' in html and "turn on [store] log_embeddings" in html and 'id="timeline-figure"' in html
    assert 'id="empty-period"' not in html


def test_one_episode_and_one_bed_on_request_and_a_reversed_period_is_refused(shift, capfd):
    episode = shift["episodes"]["bed-b"]
    code, figures = _report_json(*shift["window"], "--bed", "bed-b", "--episode", str(episode))
    assert code == 0 and [b["bed"] for b in figures["beds"]] == ["unit", "bed-b"]
    [decision] = figures["decisions"]
    assert decision["episode"]["id"] == episode and decision["episode"]["verdict"] == "not_cry"
    assert main(["report", "--db", shift["url"], "--since", "2026-12-01T10:00:00Z", "--until", "2026-12-01T08:00:00Z"]) == 2
    assert "is not before --until" in capfd.readouterr().err


def test_the_page_is_drawn_in_a_real_browser(shift, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("needs Chromium (apt-get install chromium; `make system-test-deps` does as root)")
    shot = tmp_path / "page.png"
    # --no-sandbox: Chromium's sandbox refuses to start as root (CI, containers); the page is our own file.
    result = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                             "--disable-extensions", f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}",
                             "--window-size=1200,5000", Path(shift["page"].stdout.strip()).as_uri()],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and shot.is_file(), result.stderr
    image = np.asarray(Image.open(shot).convert("RGB"))
    pixels = image.reshape(-1, 3).astype(np.int32)
    colours = np.unique(pixels[:, 0] << 16 | pixels[:, 1] << 8 | pixels[:, 2])
    assert len(colours) > 50 and (pixels.min(axis=1) < 200).mean() > 0.02  # drawn, not a blank page
    for background, what, least in ((TIMELINE_BACKGROUND, "the shift's timeline", 30),
                                    (MAP_BACKGROUND, "the embedding map", 100)):
        area = _first_area(image, background)
        assert area is not None, f"{what} is not on the page"
        drawn = (np.abs(area.astype(int) - _rgb(background)).sum(axis=2) > 30) & (area.min(axis=2) < 235)
        assert drawn.sum() >= least, f"{what} is empty: {drawn.sum()} drawn pixels"  # bars, marks, points


def _rgb(colour: str) -> np.ndarray:
    return np.array([int(colour[i:i + 2], 16) for i in (1, 3, 5)])


def _first_area(image: np.ndarray, colour: str) -> np.ndarray | None:
    """The box of the first figure whose plot area has this background: its rows, where bars may hide the
    background for a while (up to 80 rows: a bed's row hatched from end to end) but nothing else comes between."""
    mask = (image == _rgb(colour)).all(axis=2)
    rows = np.flatnonzero(mask.sum(axis=1) > 20)
    if not len(rows):
        return None
    breaks = np.flatnonzero(np.diff(rows) > 80)
    last = rows[breaks[0]] if len(breaks) else rows[-1]
    columns = np.flatnonzero(mask[rows[0]:last + 1].any(axis=0))
    return image[rows[0]:last + 1, columns[0]:columns[-1] + 1]


def test_a_running_monitor_counts_as_monitored_until_now_and_a_killed_one_until_its_last_moment(settings, tmp_path):
    """Windows are logged only while someone cries: a quiet bed's monitor logs nothing between its start
    and its stop. Its latest run without a logged end is running; an earlier one was killed."""
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    now = datetime.now(timezone.utc).replace(microsecond=0)

    def started(bed: str, at: datetime) -> None:
        writer = StoreWriter(engine, f"run-{bed}-{at:%H%M}", bed, "mic", "acoustic-v2", "acoustic-v2", lambda s: at)
        writer.write([Envelope(bed, at.isoformat(), ServiceStatus(0, "started", {}))])

    started("bed-q", now - timedelta(hours=2))  # quiet since, still running
    started("bed-k", now - timedelta(hours=3))  # killed: the next start of the bed follows it
    started("bed-k", now - timedelta(hours=1))
    report = build_report(engine, Period(now - timedelta(hours=4), now + timedelta(hours=1)), {}, now=now)
    beds = {b.bed: b for b in report.beds}
    assert beds["bed-q"].verdicts.monitored_hours == pytest.approx(2.0)
    assert [(g.start, g.end) for g in beds["bed-q"].gaps] == [(now - timedelta(hours=4), now - timedelta(hours=2)),
                                                              (now, now + timedelta(hours=1))]
    assert beds["bed-k"].verdicts.monitored_hours == pytest.approx(1.0)  # the killed run logged one moment only


NIGHT = datetime(2026, 11, 27, 20, 0, tzinfo=timezone.utc)  # a 12 h night: 3-hour intervals from 20:00, 23:00, 02:00, 05:00
# (bed, start s from 20:00, length s or None while open with its newest cry frame 200 s on, crying s, high-pitched s, bouts)
SPELLS = [
    ("bed-a", 600, 720, 540, 60, 4),  # 20:10, 12 min long with 9 min of crying: over 10 minutes all the same
    ("bed-a", 10_200, 600, 480, 0, 3),  # 22:50 to 23:00: exactly 10 min, not over; counts at 20:00, where it started
    ("bed-a", 12_600, 90, 60, 30, 2),  # 23:30
    ("bed-a", 25_200, 120, 0, 0, 0),  # 03:00, as a log written before spells has it: no crying time
    ("bed-b", -300, 900, 800, 100, 5),  # 19:55 to 20:10: started before the period, so not counted
    ("bed-b", 3_600, 660, 600, 120, 6),  # 21:00, 11 min: over 10 minutes
    ("bed-b", 36_000, None, 150, 0, 2),  # 06:00 and still going
]


def _write_spells(url: str, spells=SPELLS) -> dict[tuple[str, int], int]:
    """The spells through the store's own writer, one run per bed; their row ids by (bed, start s)."""
    engine = open_engine(url)
    for bed in sorted({s[0] for s in spells}):
        writer = StoreWriter(engine, f"run-{bed}", bed, "mic", "acoustic-v2", "acoustic-v2",
                             lambda s: NIGHT + timedelta(seconds=s))
        events: list = [ServiceStatus(0, "started", {})]
        for number, (_, start, length, crying, high, bouts) in enumerate([s for s in spells if s[0] == bed], 1):
            end = None if length is None else start + length
            spell = EpisodeSummary(number, start, end, end or start + 200, start + 0.5, "pain",
                                   {"not_cry": 0.3, "pain": 0.7}, {"pain": 0.9}, 5, crying_s=crying, bouts=bouts,
                                   voiced_s=crying / 2, high_pitch_s=high, f0_median_hz=600.0 if crying else None)
            events += [EpisodeOpened(0, replace(spell, end_s=None, bouts=0, crying_s=0.0, high_pitch_s=0.0)),
                       EpisodeUpdated(0, spell) if end is None else EpisodeClosed(0, spell)]
        writer.write([Envelope(bed, NIGHT.isoformat(), e) for e in events])
    with Session(engine) as session:
        return {(bed, round((as_utc(start) - NIGHT).total_seconds())): id_
                for id_, bed, start in session.execute(select(EpisodeRow.id, EpisodeRow.bed, EpisodeRow.start))}


def _counts(counts: dict) -> tuple:
    return (counts["spells"], counts["crying_minutes"], counts["long_spells"], counts["longest_id"], counts["longest_bed"],
            counts["longest_s"], counts["high_pitch_minutes"])


def test_crying_spells_per_bed_and_per_three_hour_interval(tmp_path):
    url = f"sqlite:///{tmp_path / 'log.db'}"
    ids = _write_spells(url)
    until = NIGHT + timedelta(hours=12)
    code, figures = _report_json("--db", url, "--since", NIGHT.isoformat(), "--until", until.isoformat())
    assert code == 0
    a, b, unit = (_bed(figures, name)["spells"] for name in ("bed-a", "bed-b", "unit"))
    assert LONG_SPELL_S == a["long_spell_s"] == 600 and a["interval_hours"] == 3
    a1, a4, b2, b3 = ids["bed-a", 600], ids["bed-a", 25_200], ids["bed-b", 3_600], ids["bed-b", 36_000]
    # the whole night: crying time without the pauses, 10 minutes by length (10:00 exactly is not over), the longest
    assert _counts(a["period"]) == (4, 18.0, 1, a1, "bed-a", 720.0, 1.5)
    assert _counts(b["period"]) == (2, 12.5, 1, b2, "bed-b", 660.0, 2.0)  # bed-b's 19:55 spell started before the night
    assert _counts(unit["period"]) == (6, 30.5, 2, a1, "bed-a", 720.0, 3.5)
    # per 3-hour interval from the period's start, each spell where it started
    assert [(i["start"], i["end"]) for i in unit["intervals"]] == [
        ((NIGHT + timedelta(hours=h)).isoformat(), (NIGHT + timedelta(hours=h + 3)).isoformat()) for h in (0, 3, 6, 9)]
    assert [_counts(i) for i in a["intervals"]] == [
        (2, 17.0, 1, a1, "bed-a", 720.0, 1.0), (1, 1.0, 0, ids["bed-a", 12_600], "bed-a", 90.0, 0.5),
        (1, 0.0, 0, a4, "bed-a", 120.0, 0.0), (0, 0.0, 0, None, None, None, 0.0)]
    assert [_counts(i) for i in b["intervals"]] == [
        (1, 10.0, 1, b2, "bed-b", 660.0, 2.0), (0, 0.0, 0, None, None, None, 0.0), (0, 0.0, 0, None, None, None, 0.0),
        (1, 2.5, 0, b3, "bed-b", 200.0, 0.0)]  # still going: its length is to its newest cry frame
    assert [_counts(i)[:3] + _counts(i)[-1:] for i in unit["intervals"]] == [(3, 27.0, 2, 3.0), (1, 1.0, 0, 0.5),
                                                                           (1, 0.0, 0, 0.0), (1, 2.5, 0, 0.0)]
    assert (a["without_spell_counts"], b["without_spell_counts"], unit["without_spell_counts"]) == (1, 0, 1)
    # the spells' own measures travel with each episode in the JSON too
    spell = next(ep for ep in _bed(figures, "bed-b")["episodes"] if ep["id"] == b3)
    assert (spell["ongoing"], spell["length_s"], spell["crying_s"], spell["bouts"]) == (True, 200.0, 150.0, 2)
    # the page: the section per bed and for the unit, and what its figures mean
    html = render_html(build_report(open_engine(url), Period(NIGHT, until), {}))
    bed_a = html[html.index('id="bed-bed-a"'):html.index('id="bed-bed-b"')]
    assert 'id="spells-bed-a"' in bed_a and 'id="spells-unit"' in html and 'id="spells-bed-b"' in html
    cells = re.sub(r' ?<td( class="\w*")?>', "<td>", re.sub(r"\s+", " ", bed_a))
    assert f'whole period</th><td>4</td><td>18.0</td><td>1</td><td>12:00 (spell {a1})</td><td>1.5</td>' in cells
    assert f"<td>02:00 to 05:00</td><td>1</td><td>0.0</td><td>0</td><td>2:00 (spell {a4})</td><td>0.0</td>" in cells
    note = re.sub(r"\s+", " ", html[html.index('id="spells-note"'):])
    for said in ("an acoustic sign, not a diagnosis", "the intervals aligned to the start of the period",
                 "a spell counts in the interval where it started", "has no crying time (0) for its episodes"):
        assert said in note, said
    assert 'id="spells-before">1 of' in html  # the episode this log holds from before spells


def test_the_spell_counts_cost_no_query_per_bed_or_interval(tmp_path):
    """A 12 h night of 8 beds stays fast: the spells are counted in one pass over the episodes the report loads."""
    def statements(url: str, hours: int) -> int:
        engine, seen = open_engine(url), []
        event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
        build_report(engine, Period(NIGHT, NIGHT + timedelta(hours=hours)), {}, now=NIGHT + timedelta(hours=hours))
        return len(seen)

    two = f"sqlite:///{tmp_path / 'two.db'}"
    _write_spells(two)
    eight = f"sqlite:///{tmp_path / 'eight.db'}"
    _write_spells(eight, [(f"bed-{n}", start + n, *rest) for n in range(8) for _, start, *rest in SPELLS])
    assert statements(two, 12) == statements(eight, 12) == statements(eight, 48)


HOSTILE_BED = r"cot $1^$ \frac"  # not valid mathtext: matplotlib used to raise parsing it


def _one_hour_log(tmp_path, bed: str) -> tuple[str, datetime]:
    """A real SQLite log of one bed: a run started an hour ago, one pain episode with an alarm. (url, now)"""
    settings_from_dict({"service": {"bed": bed}})  # a bed name the config accepts
    url = f"sqlite:///{tmp_path / 'log.db'}"
    now = datetime.now(timezone.utc).replace(microsecond=0)
    started = now - timedelta(hours=1)
    writer = StoreWriter(open_engine(url), "run-1", bed, "mic", "acoustic-v2", "acoustic-v2",
                         lambda s: started + timedelta(seconds=s))
    episode = EpisodeSummary(1, 60.0, 70.0, 70.0, 60.5, "pain", {"not_cry": 0.2, "pain": 0.7}, {"not_cry": 0.4, "pain": 0.9},
                             5, crying_s=10.0, bouts=1, alarms=(SpellAlarm("pain", 63.0, "high"),))
    alarm = Alarm(1, "pain", False, Priority.HIGH, "PAIN CRY", (started + timedelta(seconds=63)).isoformat(), True, True,
                  episode=1, probability=0.8)
    at = lambda s: (started + timedelta(seconds=s)).isoformat()  # noqa: E731
    writer.write([Envelope(bed, at(0), ServiceStatus(0, "started", {})),
                  Envelope(bed, at(60), EpisodeOpened(60 * 16_000, replace(episode, end_s=None))),
                  Envelope(bed, at(63), AlarmRaised(63 * 16_000, alarm)),
                  Envelope(bed, at(70), EpisodeClosed(70 * 16_000, episode))])
    return url, now


def test_a_bed_name_holding_dollar_signs_is_drawn_as_text_and_the_page_is_made(tmp_path):
    """The fault: matplotlib parsed the name as mathtext, an 84-line traceback and no page for the whole unit."""
    url, now = _one_hour_log(tmp_path, HOSTILE_BED)
    page = tmp_path / "report.html"
    assert main(["report", "--db", url, "--since", (now - timedelta(hours=2)).isoformat(), "--until", now.isoformat(),
                 "--out", str(page)]) == 0
    html = page.read_text()
    assert html_escape(HOSTILE_BED) in html and 'id="timeline-figure"' in html


def test_a_period_longer_than_a_week_is_cut_to_its_last_week_and_the_page_says_so(tmp_path, caplog):
    """The fault: `--since` six years back made a 20 MB page (a column per hour)."""
    url, now = _one_hour_log(tmp_path, "bed-1")
    since = now - timedelta(days=6 * 365)
    page = tmp_path / "report.html"
    with caplog.at_level(logging.WARNING, logger="monitor.cli"):
        assert main(["report", "--db", url, "--since", since.isoformat(), "--until", now.isoformat(),
                     "--out", str(page)]) == 0
    [warning] = [r.getMessage() for r in caplog.records if r.name == "monitor.cli"]
    assert "a report covers at most 7 days, so this one covers the last 7" in warning
    assert page.stat().st_size < 1_000_000
    html = page.read_text()
    assert f"The period asked for began {since:%Y-%m-%d %H:%M} UTC, 2190 days before its end" in html
    assert f"{now - timedelta(days=7):%Y-%m-%d %H:%M:%S} to {now:%Y-%m-%d %H:%M:%S} UTC" in html
    code, figures = _report_json("--db", url, "--since", since.isoformat(), "--until", now.isoformat())
    assert code == 0 and figures["period"]["since"] == (now - timedelta(days=7)).isoformat()
    assert figures["beds"][0]["alarms"][0]["label"] == "pain" and "at most 7 days" in figures["notes"][0]
