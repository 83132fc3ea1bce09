"""Episode review: the logged episodes (filtered), a timeline of the selected one from its stored
windows, staff annotation, and export. `crywatch review`, or **r** on the live dashboard."""
from __future__ import annotations

import json
import textwrap
from datetime import datetime, timezone
from pathlib import Path

from rich.markup import escape
from sqlalchemy.engine import Engine
from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static
from textual_plotext import PlotextPlot

from monitor.alarms import AlarmError, check_initials
from monitor.messages import type_probability
from monitor.store import EpisodeFilter, StoreError, annotate, episode_windows, list_episodes, to_csv
from monitor.tui.widgets import InitialsScreen, clock

_SOURCE_CHARS = 60  # of the run's input description in the detail box


class ReviewScreen(Screen):
    BINDINGS = [("c", "review('confirm')", "Confirm type"), ("n", "review('not_cry')", "Not a cry"),
                ("o", "review('other')", "Other"), ("e", "export", "Export"), ("escape", "close", "Back")]

    def __init__(self, engine: Engine, where: EpisodeFilter, export_dir: Path = Path(".")):
        super().__init__()
        self._engine, self._where, self._export_dir = engine, where, export_dir
        self.episodes: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="review-top"):
            yield DataTable(id="review-episodes", cursor_type="row")
            yield Static(id="review-detail")
        yield PlotextPlot(id="timeline")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#review-episodes", DataTable)
        for name in ("id", "bed", "start", "end", "type", "p", "alarm", "review"):
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
            if key in table.rows:
                table.update_cell(key, "review", cells[-1], update_width=True)
            else:
                table.add_row(*cells, key=key)
        self.sub_title = f"{len(episodes)} episodes"
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
        review = episode["review"]
        start = datetime.fromisoformat(episode["start"]).astimezone()
        lines = [f"[b]episode {episode['id']}[/b], {episode['bed']}",
                 f"{start:%Y-%m-%d %H:%M:%S} to {clock(episode['end']) if episode['end'] else 'ongoing'}",
                 f"{episode['label']}, {episode['windows']} windows{', ALARM' if episode['alert'] else ''}",
                 # Cut between words, marked, and the head on a line of its own: a cut mid-word ran into it.
                 f"[dim]{escape(textwrap.shorten(episode['source'], _SOURCE_CHARS, placeholder=' …'))}[/dim]",
                 f"[dim]head {escape(episode['head'])}[/dim]",
                 (f"review: [b]{review['verdict']}[/b] by {review['by']} {escape(review['note'])}" if review
                  else "not reviewed: c, n or o")]
        self.query_one("#review-detail", Static).update("\n".join(lines))
        windows = episode_windows(self._engine, episode["id"])
        plot = self.query_one(PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.title(f"episode {episode['id']}: smoothed class probabilities and cry activity per window")
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

    def action_review(self, verdict: str) -> None:
        episode = self.selected()
        if episode is None:
            return
        final = episode["label"] if verdict == "confirm" else verdict
        self.app.push_screen(InitialsScreen(f"Episode {episode['id']} is {final}: your initials, then a note if any"),
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
        self.notify(f"episode {episode['id']}: {verdict}")
        self.reload()

    def action_export(self) -> None:
        episodes = list_episodes(self._engine, self._where)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        base = self._export_dir / f"crywatch-episodes-{stamp}"
        base.with_suffix(".csv").write_text(to_csv(episodes))
        base.with_suffix(".json").write_text(json.dumps(episodes, indent=1, allow_nan=False) + "\n")
        self.notify(f"exported {len(episodes)} episodes to {base}.csv and .json")

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
