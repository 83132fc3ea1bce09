"""The dashboard for a unit: one tile per bed, most urgent first; alarms acknowledged from here
reach the monitor that raised them over its control channel and are stored in its log."""
from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.containers import Grid
from textual.message import Message
from textual.widgets import Footer, Header

from monitor.alarms import AlarmError, check_initials
from monitor.bus import BusError, Envelope, Subscriber, ThrottledWarning
from monitor.bus.control import ControlRequest, Op, reachable, send_request
from monitor.bus.keys import DashboardKeys, connect_securely
from monitor.messages import Alarm, AlarmAnnounced, AlarmRaised, Heartbeat
from monitor.tui.logs import held_while_on_screen
from monitor.tui.state import NO_SIGNAL, BedView, apply, is_left, without_left
from monitor.tui.widgets import AlertBanner, BedTile, EpisodesTable, InitialsScreen

_LOGGER = logging.getLogger(__name__)
SILENT_AFTER_S = 3.0  # heartbeats come every second: three missed is a monitor in trouble
RING_AGAIN_S = 30.0  # what the dashboard itself rings for rings again, like the monitors' own alarms
LATE_RETRY_S = 10.0  # a late acknowledgement its monitor did not take is offered again after this long


@dataclass
class BusMessage(Message):
    endpoint: str
    envelope: Envelope


@dataclass
class BusProblem(Message):
    text: str  # the newest problem
    count: int  # problems since the dashboard started


class CryWatchApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "CryWatch"
    BINDINGS = [("a", "acknowledge", "Acknowledge"), ("s", "silence", "Audio pause"), ("r", "review", "Review"),
                ("q", "quit", "Quit"), ("ctrl+c", "quit", "Quit")]

    def __init__(self, endpoints: list[str], review_db: str | None = None, keys: DashboardKeys | None = None):
        super().__init__()
        self.endpoints = list(endpoints)
        self._secure = (lambda socket: connect_securely(socket, keys)) if keys else None
        self._review_db = review_db  # the log `r` opens for review
        # Until an endpoint is heard from, its tile is keyed by the endpoint itself.
        self.beds: dict[str, BedView] = {e: BedView(e, health="never heard from") for e in self.endpoints}
        self._bed_of_endpoint: dict[str, str] = {}
        self._last_seen: dict[str, float] = {e: time.monotonic() for e in self.endpoints}
        self._rung: dict[str, float] = {}  # when each bed with an alarm only the dashboard keeps last rang
        self._stop_listening = threading.Event()
        self.bus_problems = 0  # unreadable bus messages shown so far
        # Alarms staff acknowledged here after their monitor stopped, that no log holds yet: each goes to its bed's
        # monitor when that runs again (its heartbeat names its control channel), which stores it in its log.
        self.late: dict[str, list[Alarm]] = {}
        self._late_tried: dict[str, float] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield AlertBanner("waiting for a monitor…", id="alert")
        yield Grid(id="beds")
        yield EpisodesTable(id="episodes")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "listening on " + ", ".join(self.endpoints)
        self.listen()
        self.set_interval(0.5, self.check_silent_monitors)
        self.render_state()

    @work(thread=True, exclusive=True)
    def listen(self) -> None:
        subscriber = Subscriber(self.endpoints, secure=self._secure)
        # Whatever a peer sends is at worst one counted problem: logged and shown at most once a second.
        problems = ThrottledWarning(_LOGGER)
        try:
            while not self._stop_listening.is_set():
                try:
                    received = subscriber.receive_from(timeout_ms=200)
                except BusError as exc:  # one bad peer must not blind the dashboard to the others
                    received = None
                    reported = problems.add(str(exc))
                else:
                    reported = problems.flush()  # the tail of a burst, once its second is up
                if reported:
                    self.post_message(BusProblem(problems.latest, problems.count))
                if received is not None:
                    self.post_message(BusMessage(*received))
        finally:
            subscriber.close()

    def on_bus_message(self, message: BusMessage) -> None:
        envelope = message.envelope
        bed = envelope.bed
        if self._bed_of_endpoint.get(message.endpoint) != bed:
            self._bed_of_endpoint[message.endpoint] = bed
            self.beds.pop(message.endpoint, None)
            self._last_seen.pop(message.endpoint, None)
        self._last_seen[bed] = time.monotonic()
        self._rung.pop(bed, None)
        self.beds[bed] = apply(self.beds.get(bed, BedView(bed)), envelope)
        if isinstance(envelope.event, (AlarmRaised, AlarmAnnounced)):
            self.bell()
        if isinstance(envelope.event, Heartbeat) and self.late.get(bed) and self.beds[bed].control \
                and time.monotonic() - self._late_tried.get(bed, -LATE_RETRY_S) >= LATE_RETRY_S:
            self._late_tried[bed] = time.monotonic()
            self._deliver_late(reachable(self.beds[bed].control, message.endpoint), bed, list(self.late[bed]))
        self.render_state()

    def on_bus_problem(self, message: BusProblem) -> None:
        self.bus_problems = message.count
        self.sub_title = f"listening on {', '.join(self.endpoints)} · {message.count} unreadable bus message(s)"
        self.notify(f"{message.text} ({message.count} unreadable bus message(s) so far)", severity="error", timeout=10)

    def check_silent_monitors(self) -> None:
        """A monitor that stops talking must not look like a quiet room."""
        now = time.monotonic()
        newly = [bed for bed, seen in self._last_seen.items()  # one that said it stopped is not silent: it is stopped
                 if now - seen > SILENT_AFTER_S and not self.beds[bed].silent and self.beds[bed].stopped is None]
        for bed in newly:
            self.beds[bed] = replace(self.beds[bed], silent=True)
            _LOGGER.warning("%s: %s", bed, NO_SIGNAL)
        due = [bed for bed, view in self.beds.items() if _rings_here(view)
               and now - self._rung.get(bed, -RING_AGAIN_S) >= RING_AGAIN_S]
        for bed in due:
            self._rung[bed] = now
        if due:
            self.bell()
        if newly:
            self.render_state()

    def render_state(self) -> None:
        views = sorted(self.beds.values(), key=lambda v: (v.urgency, v.bed))
        self.query_one(AlertBanner).show(views)
        grid = self.query_one("#beds", Grid)
        tiles = {tile.name: tile for tile in grid.query(BedTile)}
        for view in views:
            if view.bed not in tiles:
                tiles[view.bed] = BedTile(name=view.bed)
                grid.mount(tiles[view.bed])
            tiles[view.bed].show(view)
        for name, tile in tiles.items():
            if name not in self.beds:
                tile.remove()
        order = [tiles[v.bed] for v in views]
        if [t.name for t in grid.query(BedTile)] != [t.name for t in order]:  # re-order only on a change of urgency
            for before, tile in zip(order, order[1:]):
                grid.move_child(tile, after=before)
        # Tiles of at least 40 columns: two on an 80-column bedside terminal, four on a wall screen.
        grid.styles.grid_size_columns = max(1, min(len(views), self.size.width // 40 or 1))
        self.query_one(EpisodesTable).show(views)

    # -- staff actions ----------------------------------------------------------------------------
    def _most_urgent(self) -> tuple[BedView, Alarm | None] | None:
        """The most urgent unacknowledged alarm: (bed, alarm), alarm None for a silent monitor."""
        candidates: list[tuple[tuple[int, str, int], BedView, Alarm | None]] = []
        for view in self.beds.values():
            if view.silent and view.silent_acknowledged_by is None:
                candidates.append(((0, view.bed, 0), view, None))
            candidates += [((a.priority.rank, view.bed, a.id), view, a) for a in view.alarms + view.left
                           if a.acknowledged_by is None]
        if not candidates:
            return None
        _key, view, alarm = min(candidates, key=lambda c: c[0])
        return view, alarm

    def action_acknowledge(self) -> None:
        self._ask("acknowledge")

    def action_silence(self) -> None:
        self._ask("silence")

    def _ask(self, op: Op) -> None:
        target = self._most_urgent()
        if target is None:
            self.notify("no unacknowledged alarm")
            return
        view, alarm = target
        what = f"{view.bed}: {alarm.message}" if alarm else f"{view.bed}: {NO_SIGNAL}"
        verb = "Acknowledge" if op == "acknowledge" else "Pause the audio of"
        self.push_screen(InitialsScreen(f"{verb} {what}"), lambda by: self._act(op, view.bed, alarm, by))

    def _act(self, op: Op, bed: str, alarm: Alarm | None, by: str | None) -> None:
        if not by:
            return
        try:
            by = check_initials(by)
        except AlarmError as exc:
            self.notify(str(exc), severity="error")
            return
        if alarm is None:  # the dashboard's own alarm: nobody else to tell
            self.beds[bed] = replace(self.beds[bed], silent_acknowledged_by=by)
            _LOGGER.warning("%s: %s acknowledged by %s", bed, NO_SIGNAL, by)
            self.render_state()
            return
        if is_left(self.beds[bed], alarm):  # its monitor has stopped: only this dashboard still holds it
            if op != "acknowledge":
                self.notify(f"{bed}: its monitor has stopped, so its audio cannot be paused: acknowledge it (a)")
                return
            self.beds[bed] = without_left(self.beds[bed], alarm)
            _LOGGER.warning("%s: alarm %d %s (left by the stopped monitor) acknowledged by %s", bed, alarm.id,
                            alarm.message, by)
            self.notify(f"{bed}: alarm {alarm.id} acknowledged by {by}")
            self.render_state()
            self._log_late(bed, replace(alarm, acknowledged_by=by, acknowledged_time=datetime.now(timezone.utc).isoformat()))
            return
        bus = next((endpoint for endpoint, its_bed in self._bed_of_endpoint.items() if its_bed == bed), "")
        self._send(reachable(self.beds[bed].control, bus), ControlRequest(op, by, alarm.id), bed)

    @work(thread=True)
    def _send(self, endpoint: str, request: ControlRequest, bed: str) -> None:
        try:
            reply = send_request(endpoint, request, secure=self._secure)
        except BusError as exc:
            self.call_from_thread(self.notify, f"{bed}: {exc}", severity="error", timeout=10)
            return
        if reply.ok:
            self.call_from_thread(self.notify, f"{bed}: alarm {request.alarm} {request.op}d by {request.by}")
        else:
            self.call_from_thread(self.notify, f"{bed}: {reply.error}", severity="error", timeout=10)

    @work(thread=True)
    def _log_late(self, bed: str, alarm: Alarm) -> None:
        """An acknowledgement made after the alarm's monitor stopped, into that monitor's log so the shift report
        counts it: at once where this dashboard can write the log (`--db`; `crywatch run`'s own dashboard), else
        through the monitor when it runs again."""
        from monitor.store import acknowledge_in_log, redact_url

        why = acknowledge_in_log(self._review_db, bed, alarm) if self._review_db else "this dashboard has no log"
        if why is None:
            _LOGGER.info("%s: the acknowledgement of alarm %d by %s is in the log %s", bed, alarm.id,
                         alarm.acknowledged_by, redact_url(self._review_db or ""))
            return
        _LOGGER.warning("%s: the acknowledgement of alarm %d by %s goes to its monitor's log when it runs again (%s)",
                        bed, alarm.id, alarm.acknowledged_by, why)
        self.call_from_thread(lambda: self.late.setdefault(bed, []).append(alarm))

    @work(thread=True)
    def _deliver_late(self, endpoint: str, bed: str, alarms: list[Alarm]) -> None:
        for alarm in alarms:
            by = alarm.acknowledged_by or ""
            try:
                reply = send_request(endpoint, ControlRequest("acknowledge", by, alarm.id, earlier=alarm),
                                     secure=self._secure)
            except BusError as exc:
                _LOGGER.warning("%s: the late acknowledgement of alarm %d did not reach its monitor yet: %s", bed,
                                alarm.id, exc)
                return
            if not reply.ok:  # refused for good (e.g. malformed): kept, and said
                _LOGGER.error("%s: its monitor refused the late acknowledgement of alarm %d: %s", bed, alarm.id,
                              reply.error)
                continue
            _LOGGER.info("%s: its monitor took the late acknowledgement of alarm %d by %s for its log", bed, alarm.id, by)
            self.call_from_thread(self._delivered, bed, alarm)

    def _delivered(self, bed: str, alarm: Alarm) -> None:
        self.late[bed] = [a for a in self.late.get(bed, []) if a != alarm]

    def action_review(self) -> None:
        from monitor.store import EpisodeFilter, StoreError, open_engine
        from monitor.tui.review import ReviewScreen

        if self._review_db is None:
            self.notify("no log to review: start the dashboard with --db", severity="error")
            return
        try:
            engine = open_engine(self._review_db)
        except StoreError as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.push_screen(ReviewScreen(engine, EpisodeFilter()))

    def on_unmount(self) -> None:
        self._stop_listening.set()  # however the app ends, the subscriber thread must end too
        for bed, alarms in self.late.items():
            for alarm in alarms:  # nothing may be lost without a word: the journal keeps who acknowledged it, when
                _LOGGER.error("%s: alarm %d (raised %s) acknowledged by %s at %s after its monitor stopped is in no log: "
                              "its monitor did not run again while this dashboard was open", bed, alarm.id,
                              alarm.raised_time, alarm.acknowledged_by, alarm.acknowledged_time)


def _rings_here(view: BedView) -> bool:
    """Alarms the dashboard rings for itself: no monitor is left to announce them."""
    return (view.silent and view.silent_acknowledged_by is None) or bool(view.left)


def run_app(app: App) -> Any:
    """Run a Textual app in this terminal, with log records kept off its screen (shown once it closes)."""
    with held_while_on_screen():
        return app.run()


def run_with_service(service) -> Any:
    """`crywatch run` with a dashboard: the service runs in a thread, the app in the foreground.

    The app talks to the service only through the bus and the control channel, exactly like a
    remote dashboard.
    """
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", service.run()), name="service")
    thread.start()
    from monitor.bus.keys import load_dashboard_keys

    folder = service.settings.bus.keys
    app = CryWatchApp([service.bus_endpoint], review_db=service.settings.store.url,
                      keys=load_dashboard_keys(folder) if folder else None)
    signal.signal(signal.SIGTERM, lambda *_: app.exit(result="SIGTERM"))
    reason = "dashboard closed"
    try:
        reason = run_app(app) or reason
    finally:
        service.request_stop(reason)  # what other dashboards of this monitor show it stopped for
        thread.join()
    return result["summary"]
