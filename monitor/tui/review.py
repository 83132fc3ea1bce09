"""Spell review: the logged crying spells (filtered) and what they add up to, the highlighted one's crying time,
pitch and alarms, a timeline of it from its stored windows, staff annotation, and export. `crywatch review`, or
**r** on the live dashboard."""
from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

from rich.markup import escape
from sqlalchemy.engine import Engine
from textual.app import App, ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from monitor.alarms import AlarmError, check_initials
from monitor.messages import duration, percent, type_probability
from monitor.report.figures import LONG_SPELL_S, spell_alarms
from monitor.store import EpisodeFilter, StoreError, annotate, episode_windows, list_episodes, to_csv
from monitor.tui.widgets import InitialsScreen, clock


def _spells(count: int) -> str:
    return f"{count} spell{'' if count == 1 else 's'}"


def spells_summary(episodes: list[dict]) -> str:
    """What the listed spells add up to: their crying time, how many lasted over 10 minutes, the longest, and
    their high-pitched crying (the shift report's figures, for the filtered spells)."""
    longest = max((ep["length_s"] for ep in episodes), default=None)
    return (f"{_spells(len(episodes))}: crying {duration(sum(ep['crying_s'] for ep in episodes))}, "
            f"{sum(ep['length_s'] > LONG_SPELL_S for ep in episodes)} over {LONG_SPELL_S / 60:g} min, "
            f"longest {duration(longest)}, high-pitched {duration(sum(ep['high_pitch_s'] for ep in episodes))}")

_SOURCE_CHARS = 60  # of the run's input description in the detail box


class ReviewScreen(Screen):
    BINDINGS = [("c", "review('confirm')", "Confirm type"), ("n", "review('not_cry')", "Not a cry"),
                ("o", "review('other')", "Other"), ("e", "export", "Export"), ("escape", "close", "Back")]
    COLUMNS = ("id", "bed", "start", "end", "type", "p", "alarm", "review")

    def __init__(self, engine: Engine, where: EpisodeFilter, export_dir: Path = Path(".")):
        super().__init__()
        self._engine, self._where, self._export_dir = engine, where, export_dir
        self.episodes: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="review-summary")
        with Horizontal(id="review-top"):
            yield DataTable(id="review-episodes", cursor_type="row")
            with VerticalScroll(id="review-detail-box"):  # scrolls where the detail is longer than the box
                yield Static(id="review-detail")
        yield PlotextPlot(id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#review-episodes", DataTable)
        for name in self.COLUMNS:
            table.add_column(name, key=name)
        self.reload()

    def reload(self) -> None:
        table = self.query_one("#review-episodes", DataTable)
        episodes = list_episodes(self._engine, self._where)
        self.episodes = {str(ep["id"]): ep for ep in episodes}
        for ep in reversed(episodes):  # newest first
            key = str(ep["id"])
            cells = (ep["id"], ep["bed"], clock(ep["start"]), clock(ep["end"]) if ep["end"] else "ongoing",
                     ep["label"], type_probability(ep["probs"], ep["label"]), "ALARM" if ep["alert"] else "",
                     f"{ep['review']['verdict']} ({ep['review']['by']})" if ep["review"] else "")
            if key not in table.rows:
                table.add_row(*cells, key=key)
                continue
            for name, value in zip(self.COLUMNS, cells):  # in place: the cursor stays where staff put it
                if table.get_cell(key, name) != value:
                    table.update_cell(key, name, value, update_width=True)
        self.sub_title = _spells(len(episodes))
        self.query_one("#review-summary", Static).update(spells_summary(episodes))
        if episodes:
            self.show(self.selected() or episodes[-1])

    def selected(self) -> dict | None:
        table = self.query_one("#review-episodes", DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return self.episodes.get(str(key))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        episode = self.episodes.get(str(event.row_key.value))
        if episode is not None:
            self.show(episode)

    def show(self, episode: dict) -> None:
        self.query_one("#review-detail", Static).update(self.detail(episode))
        windows = episode_windows(self._engine, episode["id"])
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.title(f"spell {episode['id']}: smoothed class probabilities and cry activity per window")
        if windows:
            t0 = datetime.fromisoformat(windows[0]["start"])
            x = [(datetime.fromisoformat(w["start"]) - t0).total_seconds() for w in windows]
            draw = plt.plot if len(windows) > 1 else plt.scatter  # one window is a point, not a line
            for label in windows[0]["smoothed"]:
                draw(x, [w["smoothed"].get(label, 0.0) for w in windows], label=label)
            draw(x, [w["activity"] for w in windows], label="cry activity")
            plt.xlabel("seconds from the first window")
            plt.ylim(0, 1)
        plot.refresh()

    def detail(self, episode: dict) -> str:
        """The spell for the detail box (console markup): when, its crying time of its length in how many bouts, the
        alarms it raised with their times, its pitch, its type, staff's review, where it was heard. Most telling
        first: on an 80x24 terminal the box scrolls for the rest."""
        review = episode["review"]
        start = datetime.fromisoformat(episode["start"]).astimezone()
        bouts = episode["bouts"]
        lines = [f"[b]spell {episode['id']}[/b], {escape(episode['bed'])}",
                 f"{start:%Y-%m-%d %H:%M:%S} to {clock(episode['end']) if episode['end'] else 'ongoing'}",
                 f"crying {duration(episode['crying_s'])} of {duration(episode['length_s'])} "
                 f"in {bouts} bout{'' if bouts == 1 else 's'}"]
        alarms = spell_alarms(self._engine, episode["id"])
        lines += [f"[b]{escape(a.message or a.label.upper())}[/b] {clock(a.raised.isoformat())} {a.priority}"
                  + (f", ack {a.acknowledged_by}" if a.acknowledged_by else "") for a in alarms]
        if episode["alert"] and not alarms:
            lines.append("[b]ALARM[/b]")  # its alarms were not logged with it
        f0 = episode["f0_median_hz"]
        lines += [("no voiced crying" if f0 is None else
                   f"median F0 {f0:.0f} Hz, high-pitched {percent(episode['high_pitch_share'])}"),
                  f"{escape(episode['label'])} {type_probability(episode['probs'], episode['label'])}, "
                  f"{episode['windows']} windows",
                  (f"review: [b]{review['verdict']}[/b] by {review['by']} {escape(review['note'])}" if review
                   else "not reviewed: c, n or o"),
                  # Cut between words, marked, and the head on a line of its own: a cut mid-word ran into it.
                  f"[dim]{escape(textwrap.shorten(episode['source'], _SOURCE_CHARS, placeholder=' …'))}[/dim]",
                  f"[dim]head {escape(episode['head'])}[/dim]"]
        return "\n".join(lines)

    def action_review(self, verdict: str) -> None:
        episode = self.selected()
        if episode is None:
            return
        final = episode["label"] if verdict == "confirm" else verdict
        self.app.push_screen(InitialsScreen(f"Spell {episode['id']} is {final}: your initials, then a note if any"),
                             lambda answer: self._store(episode, final, answer))

    def _store(self, episode: dict, verdict: str, answer: str | None) -> None:
        if not answer:
            return
        initials, _, note = answer.partition(" ")
        try:
            annotate(self._engine, episode["id"], verdict, check_initials(initials), note.strip())
        except (AlarmError, StoreError) as exc:
            self.notify(str(exc), severity="error", timeout=10)
            return
        self.notify(f"spell {episode['id']}: {verdict}")
        self.reload()

    def action_export(self) -> None:
        episodes = list_episodes(self._engine, self._where)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = self._export_dir / f"crywatch-episodes-{stamp}"
        base.with_suffix(".csv").write_text(to_csv(episodes))
        base.with_suffix(".json").write_text(json.dumps(episodes, indent=1, allow_nan=False) + "\n")
        self.notify(f"exported {len(episodes)} spells to {base}.csv and .json")

    def action_close(self) -> None:
        if len(self.app.screen_stack) > 2:  # pushed from the live dashboard
            self.app.pop_screen()
        else:
            self.app.exit()


class ReviewApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "CryWatch review"
    BINDINGS = [("q", "quit", "Quit")]

    def __init__(self, engine: Engine, where: EpisodeFilter, export_dir: Path = Path(".")):
        super().__init__()
        self._screen = ReviewScreen(engine, where, export_dir)

    def on_mount(self) -> None:
        self.push_screen(self._screen)
