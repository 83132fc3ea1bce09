"""The dashboard app: a bus subscriber thread feeds messages; widgets render the per-bed state."""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import replace
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Header

from monitor.bus import Subscriber
from monitor.tui.state import BedView, apply
from monitor.tui.widgets import AlertBanner, ClassBars, EpisodesTable, Meters, StatusLine

SILENT_AFTER_S = 5.0
NO_SIGNAL = "NO SIGNAL FROM MONITOR"


class BusMessage(Message):
    def __init__(self, payload: dict[str, Any]) -> None:
        super().__init__()
        self.payload = payload


class CryWatchApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "CryWatch"
    BINDINGS = [("q", "quit", "Quit"), ("ctrl+c", "quit", "Quit")]

    def __init__(self, endpoints: list[str]):
        super().__init__()
        self.endpoints = list(endpoints)
        self.beds: dict[str, BedView] = {}
        self._focus_bed: str | None = None
        self._last_seen: dict[str, float] = {}
        self._stop_listening = threading.Event()

    def compose(self) -> ComposeResult:
        yield Header()
        yield AlertBanner("waiting for a monitor…", id="alert")
        with Horizontal(id="top"):
            yield Meters(id="meters")
            yield ClassBars(id="classes")
        yield StatusLine(id="status")
        yield EpisodesTable(id="episodes")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = "listening on " + ", ".join(self.endpoints)
        self.listen()
        self.set_interval(1.0, self.check_silent_monitors)

    @work(thread=True, exclusive=True)
    def listen(self) -> None:
        subscriber = Subscriber(self.endpoints)
        try:
            while not self._stop_listening.is_set():
                message = subscriber.receive(timeout_ms=200)
                if message is not None:
                    self.post_message(BusMessage(message))
        finally:
            subscriber.close()

    def on_bus_message(self, event: BusMessage) -> None:
        message = event.payload
        bed = message["bed"]
        self._last_seen[bed] = time.monotonic()
        self.beds[bed] = apply(self.beds.get(bed, BedView(bed)), message)
        if self._focus_bed is None or self.beds[bed].alerts or not self.beds[self._focus_bed].alerts:
            self._focus_bed = bed
        self.render_state()

    def check_silent_monitors(self) -> None:
        """A monitor that stops talking must not look like a quiet room (heartbeats come every second)."""
        now = time.monotonic()
        changed = False
        for bed, seen in self._last_seen.items():
            view = self.beds[bed]
            if now - seen > SILENT_AFTER_S and view.health not in ("monitor stopped", NO_SIGNAL):
                self.beds[bed] = replace(view, health=NO_SIGNAL)
                changed = True
        if changed:
            self.render_state()

    def render_state(self) -> None:
        views = list(self.beds.values())
        assert self._focus_bed is not None, "render_state runs only after a bus message has set the focus"
        focus = self.beds[self._focus_bed]
        self.query_one(AlertBanner).show(views)
        self.query_one(Meters).show(focus)
        self.query_one(ClassBars).show(focus)
        self.query_one(StatusLine).show(focus)
        self.query_one(EpisodesTable).show(views)

    def on_unmount(self) -> None:
        self._stop_listening.set()  # however the app ends, the subscriber thread must end too


def run_with_service(service) -> Any:
    """`crywatch run` with a dashboard: the service runs in a thread, the app in the foreground.

    The app talks to the service only through the bus, exactly like a remote dashboard.
    """
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", service.run()), name="service")
    thread.start()
    app = CryWatchApp([service.bus_endpoint])
    signal.signal(signal.SIGTERM, lambda *_: app.exit())
    try:
        app.run()
    finally:
        service.request_stop()
        thread.join()
    return result["summary"]
