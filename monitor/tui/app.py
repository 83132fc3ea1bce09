"""The dashboard app: a bus subscriber thread feeds messages; widgets render the per-bed state."""
from __future__ import annotations

import threading
from typing import Any

from textual import work
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Header

from monitor.bus import Subscriber
from monitor.tui.state import BedView, apply
from monitor.tui.widgets import AlertBanner, ClassBars, EpisodesTable, Meters, StatusLine


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
        self.beds[bed] = apply(self.beds.get(bed, BedView(bed)), message)
        if self._focus_bed is None or self.beds[bed].alerts or not self.beds[self._focus_bed].alerts:
            self._focus_bed = bed
        self.render_state()

    def render_state(self) -> None:
        views = list(self.beds.values())
        focus = self.beds[self._focus_bed]
        self.query_one(AlertBanner).show(views)
        self.query_one(Meters).show(focus)
        self.query_one(ClassBars).show(focus)
        self.query_one(StatusLine).show(focus)
        self.query_one(EpisodesTable).show(views)

    async def action_quit(self) -> None:
        self._stop_listening.set()
        self.exit()


def run_with_service(service) -> Any:
    """`crywatch run` with a dashboard: the service runs in a thread, the app in the foreground.

    The app talks to the service only through the bus, exactly like a remote dashboard.
    """
    result: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: result.setdefault("summary", service.run()), name="service")
    thread.start()
    try:
        CryWatchApp([service.bus_endpoint]).run()
    finally:
        service.request_stop()
        thread.join()
    return result["summary"]
