"""The live driver end to end: real files and scenarios through the threads, a real SQLite file,
real ZeroMQ sockets, real signals."""
import dataclasses
import signal
import socket
import sqlite3
import subprocess
import threading
import time

import numpy as np
import pytest
import soundfile

from monitor.audio.scenario import render_scenario
from monitor.bus import Envelope, Subscriber
from monitor.messages import AlarmRaised, EpisodeClosed, EpisodeOpened, Heartbeat, ServiceStatus, WindowScored
from monitor.pipeline import Models
from monitor.service import Service
from monitor.store import annotate, list_episodes, open_engine
from tests.conftest import PROJECT_ROOT, cry_path, crywatch_command, free_endpoint, pick, two_cries
from train.heads.site import evaluate_site


def _service(settings, tmp_path, source: str, speed: float = 0.0, models=None, on_message=None) -> Service:
    configured = settings.with_overrides(audio={"input": source, "speed": speed},
                                         store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
                                         bus={"endpoint": free_endpoint()}, service={"bed": "bed-test"})
    return Service(configured, models=models, on_message=on_message)


def test_a_real_cry_file_gives_an_episode_row_and_bus_events(settings, models, cries_index, tmp_path):
    [row] = pick(cries_index, 1, source="corvin", label="pain")
    service = _service(settings, tmp_path, str(cry_path(row)), models=models)
    subscriber = Subscriber([service.bus_endpoint])
    received = []
    stop = threading.Event()

    def listen():
        while not stop.is_set():
            message = subscriber.receive(50)
            if message:
                received.append(message)

    listener = threading.Thread(target=listen)
    listener.start()
    # PUB/SUB drops what is sent before the subscription lands (slow joiner), and at speed 0 the episode
    # opens within ~0.1 s: probe on the service's own socket (no other thread uses it before run) until heard.
    deadline = time.monotonic() + 30
    while not received:
        assert time.monotonic() < deadline, "the subscription never landed"
        service._endpoints.publisher.publish(Envelope("bed-test", "2026-11-27T08:00:00+00:00", ServiceStatus(0, "probe", {})))
        time.sleep(0.05)
    summary = service.run()
    deadline = time.monotonic() + 30  # "stopped" is the last event: everything before it has arrived too
    while not any(isinstance(m.event, ServiceStatus) and m.event.state == "stopped" for m in received):
        assert time.monotonic() < deadline, "the last events never arrived"
        time.sleep(0.05)
    stop.set()
    listener.join()
    subscriber.close()
    received[:] = [m for m in received if not (isinstance(m.event, ServiceStatus) and m.event.state == "probe")]

    assert summary.failed is None and summary.episodes
    [episode] = list_episodes(open_engine(f"sqlite:///{tmp_path / 'log.db'}"))
    assert episode["end"] is not None and episode["bed"] == "bed-test" and episode["source"].endswith(".flac")
    kinds = [type(m.event) for m in received]
    assert EpisodeOpened in kinds and EpisodeClosed in kinds and WindowScored in kinds
    assert kinds.index(EpisodeOpened) < kinds.index(EpisodeClosed)
    assert all(m.bed == "bed-test" for m in received)
    closed = next(m.event.episode for m in received if isinstance(m.event, EpisodeClosed))
    assert closed.start_time < closed.end_time and closed.start_time.endswith("+00:00")
    with sqlite3.connect(tmp_path / "log.db") as db:
        states = [k for (k,) in db.execute("select kind from service_events order by id")]
        assert states == ["started", "stopped"]
        assert db.execute("select count(*) from windows").fetchone()[0] >= 3


def test_at_speed_0_a_cry_alarm_points_at_the_episode_its_windows_typed(settings, models, cries_index, tmp_path):
    """The fault: at --speed 0 the playback and the detector run ahead of the embedder, so the second cry's
    onset reached the episode tracker before the first cry's windows did. It closed the first episode untyped
    ("cry", 0 windows), and the pain alarm those windows raised then pointed at it; `analyze` typed it pain. The
    first cry gives 7 windows: its pain evidence may decide from 4 here (8 by default), so that they raise it."""
    from monitor.analyze import analyze_file

    settings = settings.with_overrides(alerts={"min_windows": 4})

    path = tmp_path / "two_cries.wav"
    soundfile.write(path, two_cries(cries_index), 16_000)
    second_onset = threading.Event()

    class HeldEmbedder:
        """The shipped embedder, whose first call waits until the second cry's episode has opened: the order
        the probe met by chance (a busy embedder), made certain here."""

        def __getattr__(self, name):
            return getattr(models.embedder, name)

        def embed(self, clips):
            assert second_onset.wait(60), "the second cry's onset never came before its first window"
            return models.embedder.embed(clips)

    def on_message(envelope):
        if isinstance(envelope.event, EpisodeOpened) and envelope.event.episode.number == 2:
            second_onset.set()

    held = dataclasses.replace(models, embedder=HeldEmbedder())
    summary = _service(settings, tmp_path, str(path), models=held, on_message=on_message).run()
    assert summary.failed is None
    analyzed = analyze_file(path, settings, models)["episodes"]
    with sqlite3.connect(tmp_path / "log.db") as db:
        logged = db.execute("select id, label, windows, alerted from episodes order by start").fetchall()
        alarms = db.execute("select label, episode_id from alarms where technical = 0").fetchall()
    assert [(label, bool(alerted)) for _, label, _, alerted in logged] == [(e["label"], e["alert"]) for e in analyzed]
    assert [(label, windows > 0) for _, label, windows, _ in logged] == [("pain", True), ("pain", True)]
    # The second cry's pain alert finds the first one's alarm still latched: one alarm, the first episode's.
    assert alarms == [("pain", logged[0][0])]


@pytest.mark.parametrize("scenario, cry", [("nicu", True), ("quiet", False)])
def test_the_built_in_scenarios_show_the_pipeline_working(settings, models, tmp_path, scenario, cry):
    summary = _service(settings, tmp_path, f"scenario:{scenario}", models=models).run()
    # One window a second for 60 s, a few more where a cry run re-aligns them on its onset.
    assert summary.failed is None and 59 <= summary.windows <= 66
    assert len(summary.episodes) == int(cry)  # one cry, one spell, whatever spans the gate reads
    if cry:  # the cry-like sound lasts from 14 s to about 55 s: long enough for the crying alarm
        [(cry_start, cry_end)] = render_scenario("nicu").cry_spans_s
        [spell] = summary.episodes
        assert abs(spell.start_s - cry_start) <= 0.5 and spell.end_s <= cry_end + 0.5
        assert spell.crying_s >= 30 and [(a.kind, a.priority) for a in spell.alarms][:1] == [("crying", "")]


def test_a_spell_raises_its_crying_alarm_once_and_escalates_it_to_a_new_high_alarm(settings, models, tmp_path):
    """The scenario's 40 s spell with the crying alarm scaled down (5 s of crying, escalated 12 s in): the log holds
    the medium alarm, cleared as escalated, and the high one that replaced it, both pointing at the one spell."""
    scaled = settings.with_overrides(alerts={"crying_s": 5.0, "escalate_s": 12.0})
    summary = _service(scaled, tmp_path, "scenario:nicu", models=models).run()
    [spell] = summary.episodes
    assert [(a.kind, a.priority) for a in spell.alarms if a.kind == "crying"] == [("crying", ""), ("crying", "high")]
    crying, escalated = [a.raised_s for a in spell.alarms if a.kind == "crying"]
    assert escalated == pytest.approx(spell.start_s + 12.0, abs=0.05) and crying < escalated
    with sqlite3.connect(tmp_path / "log.db") as db:
        rows = db.execute("select priority, message, clear_reason from alarms where label = 'crying' order by id").fetchall()
        episodes = db.execute("select count(*), max(crying_s), max(bouts) from episodes").fetchone()
    assert rows == [("medium", "CRYING", "escalated to high"), ("high", "CRYING FOR 12 S", "monitor stopped")]
    assert episodes[0] == 1 and episodes[1] >= 30 and episodes[2] >= 1


class _BrokenEmbedder:
    def __init__(self, like):
        self.id, self.dim = like.id, like.dim

    def embed(self, windows):
        raise RuntimeError("simulated embedder crash")


def test_a_crashed_worker_stops_the_service_loudly_and_is_logged(settings, models, tmp_path):
    broken = Models(models.detector, _BrokenEmbedder(models.embedder), models.head)
    summary = _service(settings, tmp_path, "scenario:nicu", models=broken).run()
    assert summary.failed and "embedder worker failed: RuntimeError: simulated embedder crash" in summary.failed
    with sqlite3.connect(tmp_path / "log.db") as db:
        kinds = [k for (k,) in db.execute("select kind from service_events order by id")]
        alarm = db.execute("select label, technical, priority, message, clear_reason from alarms").fetchone()
    assert kinds == ["started", "failed"]
    assert alarm[:3] == ("monitor_failed", 1, "high") and "simulated embedder crash" in alarm[3]
    assert alarm[4] == "monitor stopped"


def _open_alarms(db) -> int:
    with sqlite3.connect(db) as conn:  # WAL: a reader does not block the monitor writing
        return conn.execute("select count(*) from alarms where cleared is null").fetchone()[0]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_service_cleanly_with_everything_flushed(tmp_path, sig):
    db = tmp_path / "log.db"
    process = subprocess.Popen(
        crywatch_command("run", "--headless", "--input", "scenario:nicu", "--speed", "4", "--db", f"sqlite:///{db}",
                         "--bus", free_endpoint()),
        cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in process.stdout:  # wait until the cry episode is under way
            lines.append(line)
            if "cry episode 1 started" in line:
                break
        time.sleep(1.0)
        process.send_signal(sig)
        rest, _ = process.communicate(timeout=30)
    finally:
        process.kill()
    output = "".join(lines) + rest
    assert process.returncode == 0, output
    assert "cry episode 1 started" in output and f"stopped (reason={sig.name}," in output  # the signal is the reason published
    with sqlite3.connect(db) as conn:
        ends = conn.execute("select end from episodes").fetchall()
        assert len(ends) == 1 and ends[0][0] is not None  # the open episode was closed and written
        kinds = [k for (k,) in conn.execute("select kind from service_events order by id")]
        assert kinds[-1] == "stopped"
    assert _open_alarms(db) == 0


def test_after_kill_9_the_next_start_closes_what_was_left_open(tmp_path):
    db = tmp_path / "log.db"
    run = ("run", "--headless", "--db", f"sqlite:///{db}", "--bus", "tcp://127.0.0.1:*", "--bed", "bed-5")
    process = subprocess.Popen(crywatch_command(*run, "--input", "scenario:nicu", "--speed", "4"), cwd=PROJECT_ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            if "ALARM" in line:  # a latched alarm is open until someone acknowledges it
                break
        deadline = time.monotonic() + 30  # the store writes in batches: wait until the alarm is in the file
        while not _open_alarms(db):
            assert time.monotonic() < deadline and process.poll() is None, "the alarm never reached the log"
            time.sleep(0.1)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
    with sqlite3.connect(db) as conn:
        [(open_episodes,)] = conn.execute("select count(*) from episodes where end is null").fetchall()
    assert _open_alarms(db) == 1
    again = subprocess.run(crywatch_command(*run, "--input", "scenario:quiet", "--speed", "0"), cwd=PROJECT_ROOT,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"recovered (interrupted_episodes={open_episodes}, interrupted_alarms=1)" in again.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from episodes where end is null").fetchone() == (0,)
        assert conn.execute("select count(*) from episodes where interrupted and end >= start").fetchone() == (open_episodes,)
        assert conn.execute("select clear_reason from alarms").fetchone()[0].startswith("interrupted")
    assert _open_alarms(db) == 0


class _HungEmbedder:
    """Embeds the first batch, then blocks forever on the second, like a wedged inference runtime."""

    def __init__(self, like):
        self.id, self.dim, self._like, self._calls = like.id, like.dim, like, 0
        self.release = threading.Event()

    def embed(self, windows):
        self._calls += 1
        if self._calls > 1:
            self.release.wait()
        return self._like.embed(windows)


def test_a_hung_stage_is_a_technical_alarm_and_the_watchdog_starves(settings, models, tmp_path, monkeypatch):
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(0.1)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    embedder = _HungEmbedder(models.embedder)
    # At 4 x real time the first cry (20 s in) is reached after 5 s, not 20: the stage timeout, the heartbeats
    # and the stop budget all run on the wall clock whatever the speed, and the gate waits for a file's
    # embedder rather than running ahead of it, so nothing the test checks depends on the speed.
    service = Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 4.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-h", "stage_timeout_s": 2.0}),
        models=Models(models.detector, embedder, models.head))
    subscriber = Subscriber([service.bus_endpoint])
    runner = threading.Thread(target=service.run)
    runner.start()
    pings: list[float] = []
    try:
        deadline, alarm = time.monotonic() + 40, None
        while alarm is None:
            assert time.monotonic() < deadline, "no technical alarm for the hung embedder"
            got = subscriber.receive(50)
            # monitor_behind may come first: a hung embedder also falls behind the newest audio
            if got is not None and isinstance(got.event, AlarmRaised) and got.event.alarm.label == "stage_hung":
                alarm = got.event.alarm
            try:
                if b"WATCHDOG=1" in notify.recv(100):
                    pings.append(time.monotonic())
            except TimeoutError:
                pass
        raised_at = time.monotonic()
        assert alarm.label == "stage_hung" and "embedder made no progress" in alarm.message
        assert pings  # the watchdog was petted while all was well
        while time.monotonic() < raised_at + 3:
            try:
                if b"WATCHDOG=1" in notify.recv(100):
                    pings.append(time.monotonic())
            except TimeoutError:
                pass
        assert max(pings) < raised_at, "the watchdog was still petted with a hung stage"
        stopping = time.monotonic()
        service.request_stop()
        runner.join(timeout=40)
        assert not runner.is_alive() and time.monotonic() - stopping < 25  # inside TimeoutStopSec=30
    finally:
        embedder.release.set()
        service.request_stop()
        runner.join(timeout=30)
        subscriber.close()
        notify.close()
    with sqlite3.connect(tmp_path / "log.db") as db:
        assert db.execute("select count(*) from episodes where end is null").fetchone() == (0,)
        technical = db.execute("select label from alarms where technical").fetchall()
        assert ("stage_hung",) in technical and set(technical) <= {("stage_hung",), ("monitor_behind",)}


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs: the log's disk, which the test fills and empties."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1M", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("needs permission to mount a tmpfs (root, as on CI)")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_stops_the_log_not_the_alarms_and_nothing_is_lost(settings, models, small_disk):
    db = small_disk / "log.db"
    service = Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 3.0}, store={"url": f"sqlite:///{db}"},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-d"}), models=models)
    subscriber = Subscriber([service.bus_endpoint])
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as f:  # fill the disk before the cry starts (at 20 s of the scenario)
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    runner = threading.Thread(target=service.run)
    runner.start()
    seen: list = []
    # Both technical alarms are raised within ~0.1 s of the start, possibly before this subscription
    # has landed (PUB/SUB slow joiner): heartbeats carry them as well, since they stay latched.
    beats: list[Heartbeat] = []
    try:
        deadline = time.monotonic() + 40
        while not any(isinstance(e, AlarmRaised) and not e.alarm.technical for e in seen):
            assert time.monotonic() < deadline, f"no cry alarm on the bus with the disk full: {seen[-3:]}"
            got = subscriber.receive(100)
            if got is not None and isinstance(got.event, Heartbeat):
                beats.append(got.event)
            elif got is not None:
                seen.append(got.event)
        technical = {a.label: a.priority.value for a in [e.alarm for e in seen if isinstance(e, AlarmRaised)]
                     + [a for b in beats for a in b.alarms] if a.technical}
        assert technical == {"disk_nearly_full": "low", "log_failing": "medium"}  # said so, below the cry itself
        filler.unlink()  # space returns
        while runner.is_alive():
            got = subscriber.receive(100)
            if got is not None and not isinstance(got.event, Heartbeat):
                seen.append(got.event)
    finally:
        service.request_stop()
        runner.join(timeout=30)
        subscriber.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("select count(*) from episodes where end is not null").fetchone()[0] >= 1
        assert conn.execute("select label from alarms where not technical").fetchall()[:1] == [("crying",)]
        assert {"log_failing", "disk_nearly_full"} <= {label for (label,) in conn.execute(
            "select label from alarms where technical")}
        gated = sum(isinstance(e, WindowScored) and e.gated for e in seen)
        assert conn.execute("select count(*) from windows").fetchone()[0] == gated  # the spooled ones too
        lost = conn.execute("select detail from service_events where kind = 'stopped'").fetchone()[0]
    assert '"log_events_lost": 0' in lost


class _SlowEmbedder:
    """As fast as a bedside CPU running HeAR: 0.3 s per call."""

    def __init__(self, like):
        self.id, self.dim, self._like = like.id, like.dim, like

    def embed(self, windows):
        time.sleep(0.3)
        return self._like.embed(windows)


def test_a_file_at_full_speed_waits_for_a_slow_embedder_instead_of_dropping(settings, models, tmp_path):
    path = tmp_path / "three-scenarios.wav"  # 3 min, three cries: far more windows than the embedder queue holds
    soundfile.write(path, np.tile(render_scenario("nicu").samples, 3), 16000)
    slow = Models(models.detector, _SlowEmbedder(models.embedder), models.head)
    service = _service(settings, tmp_path, str(path), speed=0.0, models=slow)
    summary = service.run()
    assert summary.failed is None and service.dropped_windows == 0
    assert 175 <= summary.windows <= 195  # every window, as at real time (about one a second of the 180 s)


def test_stored_embeddings_let_a_unit_score_a_head_on_its_own_reviewed_episodes(settings, models, tmp_path):
    service = Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 0.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}",
                                                               "log_embeddings": True},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-e"}), models=models)
    assert service.run().failed is None
    with sqlite3.connect(tmp_path / "log.db") as conn:
        windows = conn.execute("select count(*) from windows").fetchone()[0]
        stored = conn.execute("select embedder_id, length(vector) from window_embeddings").fetchall()
    assert windows >= 10 and len(stored) == windows  # one per gated window, nothing else
    assert set(stored) == {(models.embedder.id, 4 * models.embedder.dim)}  # float32 numbers, not audio
    engine = open_engine(f"sqlite:///{tmp_path / 'log.db'}")
    first = list_episodes(engine)[0]
    annotate(engine, first["id"], "not_cry", "AB", "synthetic")
    candidate = evaluate_site(engine, models.head)["candidate"]
    assert candidate["scored"] == 1 and candidate["without_embeddings"] == 0
    [(label, precision)] = candidate["precision_by_type"].items()
    assert label in models.head.classes and precision["confirmed"] == 0  # staff said: not a cry
