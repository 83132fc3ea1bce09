"""Small widgets, each rendering part of the unit's state."""
from __future__ import annotations

from datetime import datetime

from rich.markup import escape
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label, Static

from monitor.messages import Alarm, EpisodeSummary, Priority, duration, percent
from monitor.tui.state import NO_SIGNAL, STOPPED_PRIORITY, BedView, alarm_urgency

_BAR = 14  # bars, labels and values fit a half-width panel of an 80-column terminal
PRIORITY_CLASSES = ("priority-high", "priority-medium", "priority-low")
HALF_TILE = 34  # text columns of a tile on an 80-column terminal (two a row): the width assumed until one is laid out


def clock(iso: str | None) -> str:
    """An event's UTC time as this PC's local wall-clock time."""
    return datetime.fromisoformat(iso).astimezone().strftime("%H:%M:%S") if iso else "--:--:--"


def spell_parts(episode: EpisodeSummary) -> list[tuple[str, str]]:
    """The open spell for a tile, as (separator, part) pieces to pack: number, start, type; its crying time of its
    running length; its high-pitched share once any of its crying was voiced."""
    parts = [("", f"[b]spell {episode.number}[/b] {clock(episode.start_time)} {escape(episode.label)} "
                  f"{episode.type_probability()}"),
             ("  ", f"crying {duration(episode.crying_s)} of {duration(episode.length_s)}")]
    if episode.high_pitch_share is not None:
        parts.append((", ", f"high-pitched {percent(episode.high_pitch_share)}"))
    return parts


def pack(parts: list[tuple[str, str]], width: int) -> list[str]:
    """Pieces (console markup) on as few lines of `width` cells as they fit, each joined to the line before by
    its separator, none split: a value never wraps away from its name."""
    lines: list[str] = []
    for separator, part in parts:
        if lines and Text.from_markup(lines[-1] + separator + part).cell_len <= width:
            lines[-1] += separator + part
        else:
            lines.append(part)
    return lines


def bar(fraction: float, width: int = _BAR) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


def alarm_state(alarm: Alarm, short: bool = False) -> str:
    if alarm.acknowledged_by:
        return f"ack {alarm.acknowledged_by}" + ("" if short else f" {clock(alarm.acknowledged_time)}")
    if alarm.silenced_until:
        return "paused" if short else f"audio paused to {clock(alarm.silenced_until)}"
    return "UNACK" if short else "UNACKNOWLEDGED"


def alarm_text(alarm: Alarm, left: bool = False) -> str:
    """`left`: the monitor that raised it has stopped (BedView.left)."""
    gone = ", monitor stopped" if left else "" if alarm.condition else ", cause gone"
    return f"{alarm.priority.value.upper()} {alarm.message} since {clock(alarm.raised_time)} ({alarm_state(alarm)}{gone})"


def highlight(widget: Static, view: BedView | None) -> None:
    """Colour by the most urgent alarm: its priority while unacknowledged, muted once acknowledged."""
    acknowledged, rank = view.urgency if view else (1, len(Priority))
    wanted = ""
    if rank < len(Priority):
        wanted = "acknowledged" if acknowledged else f"priority-{list(Priority)[rank].value}"
    for name in (*PRIORITY_CLASSES, "acknowledged"):
        widget.set_class(name == wanted, name)


class AlertBanner(Static):
    """The one thing a nurse must see from across the room: the most urgent alarms of the unit."""

    def show(self, views: list[BedView]) -> None:
        lines = []
        for view in sorted(views, key=lambda v: (v.urgency, v.bed)):
            if view.silent:
                lines.append((alarm_urgency(view.silent_acknowledged_by, Priority.HIGH), f"{view.bed}: HIGH {NO_SIGNAL}"
                              + (f" (ack {view.silent_acknowledged_by})" if view.silent_acknowledged_by else "")))
            lines += [(alarm_urgency(a.acknowledged_by, a.priority), f"{view.bed}: {alarm_text(a)}") for a in view.alarms]
            lines += [(alarm_urgency(None, a.priority), f"{view.bed}: {alarm_text(a, left=True)}") for a in view.left]
            if view.stopped is not None:
                lines.append((alarm_urgency(None, STOPPED_PRIORITY),
                              f"{view.bed}: {STOPPED_PRIORITY.value.upper()} {view.health}"))
        lines.sort(key=lambda item: item[0])
        highlight(self, min(views, key=lambda v: v.urgency, default=None))
        if lines:
            self.update(escape("\n".join(text for _, text in lines[:3])))
        elif not views:
            self.update("waiting for a monitor…")
        else:
            self.update("no alarm")


class BedTile(Static):
    """One bed: health, sound, the open spell, its alarms. Lines are packed to the tile's width (two tiles a row
    on an 80-column terminal, four on a wall screen), so no value is wrapped away from its name."""

    _view: BedView | None = None
    _width = 0  # the width the shown text was packed for

    def show(self, view: BedView) -> None:
        self._view, self._width = view, self.content_size.width
        width = self._width or HALF_TILE
        self.border_title = view.bed
        highlight(self, view)
        health = NO_SIGNAL if view.silent else view.health
        level = view.level_dbfs if view.level_dbfs is not None else -120.0
        episode = view.episode
        lines = [] if health == "ok" else [f"[b]{escape(health)}[/b]"]
        lines += [
            f"level {level:4.0f} dBFS {'(ok)' if health == 'ok' else ''}",
            f"crying {bar(view.cry, 10)} {view.cry:.2f}",
        ]
        lines += pack(spell_parts(episode), width) if episode else ["no crying spell"]
        if view.probs:
            lines += pack([("  ", f"{escape(label)} {p:.2f}") for label, p in view.probs.items()], width)
        if view.unsupported:
            lines.append(f"[dim]not in this head: {', '.join(view.unsupported)}[/dim]")
        lines += [_tile_alarm(a) for a in view.alarms] + [_tile_alarm(a, " (monitor stopped)") for a in view.left]
        self.update("\n".join(lines))

    def on_resize(self, _event: events.Resize) -> None:
        if self._view is not None and self.content_size.width != self._width:
            self.show(self._view)  # packed again for the width the tile now has


def _tile_alarm(alarm: Alarm, note: str = "") -> str:
    return (f"[b]#{alarm.id} {alarm.priority.value.upper()}[/b] {escape(alarm.message)} {clock(alarm.raised_time)} "
            f"{alarm_state(alarm, short=True)}{note}")


class EpisodesTable(DataTable):
    """Every bed's recent crying spells, the open ones' crying time running. Rows are keyed and updated in place,
    so the cursor and scroll stay where staff put them while events stream in."""

    COLUMNS = ("bed", "start", "end", "crying", "type", "p", "alert")

    def on_mount(self) -> None:
        self.cursor_type = "row"
        for name in self.COLUMNS:
            self.add_column(name, key=name)

    def show(self, views: list[BedView]) -> None:
        for view in views:
            for ep in list(view.recent) + ([view.episode] if view.episode else []):
                self._put(view.bed, ep)

    def _put(self, bed: str, ep: EpisodeSummary) -> None:
        key = f"{bed}/{ep.start_time}"
        cells = (bed, clock(ep.start_time), "ongoing" if ep.ongoing else clock(ep.end_time), duration(ep.crying_s),
                 ep.label, ep.type_probability(), "ALERT" if ep.alerts else "")
        if key not in self.rows:
            self.add_row(*cells, key=key)
            return
        for name, value in zip(self.COLUMNS, cells):
            if self.get_cell(key, name) != value:
                self.update_cell(key, name, value, update_width=True)


class InitialsScreen(ModalScreen[str | None]):
    """Asks who is acknowledging (or silencing): staff initials, stored with the alarm."""

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, prompt: str):
        super().__init__()
        self._prompt = prompt

    def compose(self) -> ComposeResult:
        with Vertical(id="initials-dialog"):
            yield Label(escape(self._prompt))
            yield Input(placeholder="your initials, then Enter (Esc cancels)", id="initials")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)

    def action_cancel(self) -> None:
        self.dismiss(None)
