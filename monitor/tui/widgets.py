"""Small widgets, each rendering one part of a BedView."""
from __future__ import annotations

from datetime import datetime

from textual.widgets import DataTable, Static

from monitor.episodes import type_probability
from monitor.tui.state import BedView

_BAR = 14  # bars, labels and values fit a half-width panel of an 80-column terminal


def clock(iso: str) -> str:
    """An event's UTC time as this PC's local wall-clock time."""
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S")


def bar(fraction: float, width: int = _BAR) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


class AlertBanner(Static):
    """The one thing a nurse must see from across the room."""

    def show(self, views: list[BedView]) -> None:
        alerting = [(v.bed, a) for v in views for a in v.alerts]
        unhealthy = [v for v in views if v.health not in ("ok", "waiting for the monitor")]
        self.set_class(bool(alerting), "alerting")
        self.set_class(not alerting and bool(unhealthy), "unhealthy")
        problems = [f"ALERT {bed}: {label.upper()} CRY" for bed, label in alerting]
        problems += [f"{v.bed}: {v.health}" for v in unhealthy]
        if problems:
            self.update("  ".join(problems))
        elif not views:
            self.update("waiting for a monitor…")
        else:
            self.update("no alert")


class Meters(Static):
    def show(self, view: BedView) -> None:
        self.border_title = view.bed
        level = view.level_dbfs if view.level_dbfs is not None else -120.0
        episode = view.episode
        lines = [
            f"level    {bar((level + 90) / 90)} {level:4.0f} dBFS",
            f"activity {bar(view.activity)} {view.activity:5.2f}",
            f"crying   {bar(view.cry)} {view.cry:5.2f}",
            (f"[b]episode {episode['episode']}[/b] since {clock(episode['start_time'])}: {episode['label']}"
             if episode else "no cry episode"),
        ]
        self.update("\n".join(lines))


class ClassBars(Static):
    def on_mount(self) -> None:
        self.border_title = "smoothed class probabilities"

    def show(self, view: BedView) -> None:
        if not view.probs:
            self.update("class probabilities appear with the first window")
            return
        lines = []
        for label, p in view.probs.items():
            mark = " [reverse]ALERT[/]" if label in view.alerts else ""
            lines.append(f"{label:<11}{bar(p)} {p:4.2f}{mark}")
        for label in view.unsupported:
            lines.append(f"{label} [dim](not in this head)[/dim]")
        self.update("\n".join(lines))


class StatusLine(Static):
    def show(self, view: BedView) -> None:
        self.update(f"source: {view.source or '?'}\n"
                    f"embedder: {view.embedder or '?'}   head: {view.head or '?'}   health: {view.health}")


class EpisodesTable(DataTable):
    COLUMNS = ("bed", "start", "end", "type", "p", "alert")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.add_columns(*self.COLUMNS)

    def show(self, views: list[BedView]) -> None:
        rows = []
        for view in views:
            episodes = list(view.recent) + ([view.episode] if view.episode else [])
            for ep in episodes:
                end = "ongoing" if ep["end_time"] is None else clock(ep["end_time"])
                rows.append((view.bed, clock(ep["start_time"]), end, ep["label"],
                             type_probability(ep), "ALERT" if ep["alert"] else ""))
        self.clear()
        for row in reversed(rows):  # newest first
            self.add_row(*row)
