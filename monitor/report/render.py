"""The report's page: matplotlib draws each figure to PNG (Agg, through Figure objects: no pyplot state),
inlined as data URIs; a jinja2 template lays them out with the tables. Nothing is fetched at view time."""
from __future__ import annotations

import base64
import io
from datetime import datetime, timedelta
from itertools import cycle

import jinja2
import matplotlib
from matplotlib import dates as mdates
from matplotlib.artist import Artist
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from monitor.messages import NOT_CRY, duration
from monitor.report.figures import UNIT, BedFigures, Decision, EmbeddingMap, Report, Span

# One colour per cry type and verdict everywhere in the page (colour-blind-safe Okabe-Ito where it reaches).
_COLOURS = {"pain": "#d55e00", "discomfort": "#e69f00", "hunger": "#0072b2", "other_cry": "#cc79a7",
            "neurological": "#009e73", NOT_CRY: "#7f7f7f", "other": "#56b4e9"}
_SPARE = ("#f0e442", "#000000", "#8c564b", "#17becf")
_GAP, _TECHNICAL, _UNREVIEWED = "#e6e6e6", "#ffcf99", "#d9d9d9"
# Faint backgrounds of their own: a reader tells the plot areas apart, and the browser test finds them.
TIMELINE_BACKGROUND, MAP_BACKGROUND = "#f7f9fc", "#f4f8f4"
_DPI = 90


class _Palette:
    def __init__(self) -> None:
        self._spare = cycle(_SPARE)
        self._chosen = dict(_COLOURS)

    def __call__(self, label: str) -> str:
        if label not in self._chosen:
            self._chosen[label] = next(self._spare)
        return self._chosen[label]


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    # Figures lay themselves out (constrained layout): bbox_inches="tight" would draw each one twice.
    figure.savefig(buffer, format="png", dpi=_DPI, pil_kwargs={"compress_level": 3})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _time_axis(axes, start: datetime, end: datetime) -> None:
    axes.set_xlim(mdates.date2num(start), mdates.date2num(end))
    locator = mdates.AutoDateLocator(minticks=4, maxticks=12)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    axes.set_xlabel("time (UTC)")


def _bars(axes, spans: list[Span], y: float, height: float, colour: str, min_width: float, **style) -> None:
    if spans:
        axes.broken_barh([(mdates.date2num(s.start), max(mdates.date2num(s.end) - mdates.date2num(s.start), min_width))
                          for s in spans], (y - height / 2, height), facecolors=colour, **style)


def timeline(beds: list[BedFigures], report: Report, palette: _Palette) -> str:
    """One row per bed: unmonitored gaps and technical alarms shaded, episodes as bars by type (at least
    0.2 % of the period wide, so a 10 s cry in a 12 h shift stays visible), alarm marks above them."""
    period = report.period
    figure = Figure(figsize=(11, 1.5 + 0.5 * max(len(beds), 1)), layout="constrained")
    axes = figure.add_subplot(facecolor=TIMELINE_BACKGROUND)
    min_width = (mdates.date2num(period.until) - mdates.date2num(period.since)) * 0.002
    labels = set()
    for row, bed in enumerate(beds):
        y = len(beds) - 1 - row
        _bars(axes, bed.gaps, y, 0.9, _GAP, 0, hatch="//", edgecolor="#bbbbbb", linewidth=0)
        _bars(axes, bed.technical, y, 0.9, _TECHNICAL, min_width, alpha=0.8)
        for label in sorted({ep.label for ep in bed.episodes}):
            labels.add(label)
            _bars(axes, [Span(ep.start, ep.end) for ep in bed.episodes if ep.label == label], y, 0.5, palette(label), min_width)
        for when, marker, colour in (("raised", "v", "#c00000"), ("acknowledged", "o", "#1a9850"), ("cleared", "x", "#333333")):
            moments = [getattr(a, when) for a in bed.alarms if getattr(a, when) is not None
                       and period.since <= getattr(a, when) <= period.until]
            if moments:
                axes.plot([mdates.date2num(m) for m in moments], [y + 0.36] * len(moments), linestyle="none",
                          marker=marker, color=colour, markersize=6)
    axes.set_yticks(range(len(beds)), [b.bed for b in reversed(beds)])
    axes.set_ylim(-0.6, max(len(beds), 1) - 0.4)
    _time_axis(axes, period.since, period.until)
    handles: list[Artist] = [Patch(color=palette(label), label=label) for label in sorted(labels)]
    handles += [Patch(facecolor=_GAP, hatch="//", edgecolor="#bbbbbb", label="not monitored"),
                Patch(color=_TECHNICAL, label="technical alarm"),
                Line2D([], [], linestyle="none", marker="v", color="#c00000", label="alarm raised"),
                Line2D([], [], linestyle="none", marker="o", color="#1a9850", label="acknowledged"),
                Line2D([], [], linestyle="none", marker="x", color="#333333", label="cleared")]
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize=8, frameon=False)
    axes.grid(axis="x", color="#eeeeee")
    return _png(figure)


def burden(bed: BedFigures, palette: _Palette) -> str:
    """Minutes in crying spells in each hour (pauses between bouts included), stacked by type (the unit's; the page
    gives each bed's as a table)."""
    figure = Figure(figsize=(7, 2.6), layout="constrained")
    axes = figure.add_subplot()
    hours = [mdates.date2num(h.start) for h in bed.burden.per_hour]
    bottom = [0.0] * len(hours)
    for label in sorted({k for h in bed.burden.per_hour for k in h.minutes}):
        heights = [h.minutes.get(label, 0.0) for h in bed.burden.per_hour]
        axes.bar(hours, heights, width=1 / 24 * 0.9, bottom=bottom, align="edge", color=palette(label), label=label)
        bottom = [b + h for b, h in zip(bottom, heights)]
    if bed.burden.per_hour:
        first = bed.burden.per_hour[0].start
        _time_axis(axes, first, bed.burden.per_hour[-1].start + timedelta(hours=1))
    axes.set_ylabel("minutes in spells")
    axes.set_ylim(0, max([*bottom, 1.0]) * 1.15)
    if bed.burden.episodes_by_type:
        figure.legend(fontsize=7, frameon=False, loc="outside right center")
    return _png(figure)


def embedding_map(figures: EmbeddingMap, palette: _Palette) -> str | None:
    """Two panels of the same projection: the model's type, and staff's verdict where reviewed."""
    if figures.missing:
        return None
    figure = Figure(figsize=(11, 4.6), layout="constrained")
    by_type, by_verdict = figure.subplots(1, 2, sharex=True, sharey=True, subplot_kw={"facecolor": MAP_BACKGROUND})
    # Markers through plot(), not scatter(): Agg stamps one marker image per point, several times faster.
    size = 3.5 if len(figures.points) < 2000 else 2.0
    for label in sorted({p.type for p in figures.points}):
        chosen = [p for p in figures.points if p.type == label]
        by_type.plot([p.x for p in chosen], [p.y for p in chosen], "o", markersize=size, color=palette(label), alpha=0.75,
                     markeredgewidth=0, label=f"{label} ({len(chosen)})")
    unreviewed = [p for p in figures.points if p.verdict is None]
    by_verdict.plot([p.x for p in unreviewed], [p.y for p in unreviewed], "o", markersize=size, color=_UNREVIEWED,
                    markeredgewidth=0, label=f"not reviewed ({len(unreviewed)})")
    for verdict in sorted({p.verdict for p in figures.points if p.verdict is not None}):
        chosen = [p for p in figures.points if p.verdict == verdict]
        by_verdict.plot([p.x for p in chosen], [p.y for p in chosen], "o", markersize=size * 1.4, color=palette(verdict),
                        markeredgecolor="black", markeredgewidth=0.3, label=f"{verdict} ({len(chosen)})")
    for axes, title in ((by_type, "the model's type (window's most probable smoothed class)"),
                        (by_verdict, "staff verdict (windows of reviewed episodes)")):
        axes.set_title(title, fontsize=10)
        axes.set_xlabel(f"PC 1 ({figures.explained_variance[0]:.0%} of variance)")
        axes.legend(fontsize=7, frameon=False, markerscale=2)
    by_type.set_ylabel(f"PC 2 ({figures.explained_variance[1]:.0%})")
    return _png(figure)


def decision(figures: Decision, palette: _Palette) -> str | None:
    """The review screen's timeline: each window's smoothed probability per class, its cry activity,
    the alarm thresholds and when an alarm was raised."""
    if not figures.windows:
        return None
    figure = Figure(figsize=(8.5, 2.6), layout="constrained")
    axes = figure.add_subplot()
    x = [w.seconds for w in figures.windows]
    axes.fill_between(x, [w.activity for w in figures.windows], step="mid", color="#cccccc", label="cry activity")
    marker = "o" if len(x) < 3 else None
    for label in figures.windows[0].smoothed:
        axes.plot(x, [w.smoothed.get(label, 0.0) for w in figures.windows], color=palette(label), marker=marker,
                  linestyle="--" if label == NOT_CRY else "-", label=label)
    for label, threshold in figures.thresholds.items():
        axes.axhline(threshold, color=palette(label), linestyle=":", linewidth=1.2)
    for raised in figures.alarm_raised_s:
        axes.axvline(raised, color="#c00000", linewidth=1.5)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel("seconds from the episode's start")
    axes.set_ylabel("probability")
    figure.legend(fontsize=7, frameon=False, loc="outside right center")
    return _png(figure)


def render_html(report: Report) -> str:
    # Bed names, cry types and verdicts are text, never mathtext: a bed called "cot $1^$" stopped the whole page.
    # Tick labels are made while a figure is saved, so the setting holds until every figure is drawn.
    with matplotlib.rc_context({"text.parse_math": False}):
        return _render_html(report)


def _render_html(report: Report) -> str:
    palette = _Palette()
    beds = [b for b in report.beds if b.bed != UNIT]
    environment = jinja2.Environment(loader=jinja2.PackageLoader("monitor.report", "templates"),
                                     autoescape=True, undefined=jinja2.StrictUndefined)
    environment.filters["clock"] = lambda when: when.strftime("%Y-%m-%d %H:%M:%S") if when else "-"
    environment.filters["seconds"] = lambda value: "-" if value is None else f"{value:.0f} s"
    environment.filters["share"] = lambda value: "-" if value is None else f"{value:.0%}"
    environment.filters["rate"] = lambda value: "-" if value is None else f"{value:.2f}"
    environment.filters["minutes"] = lambda value: f"{value:.1f}"
    environment.filters["duration"] = duration
    # A scoring interval's bounds: clock time, with the date where the period runs over more than a day.
    environment.filters["hhmm"] = lambda when, period: when.strftime("%H:%M" if period.hours <= 24 else "%Y-%m-%d %H:%M")
    return environment.get_template("report.html.j2").render(
        report=report, unit=report.beds[0], beds=beds, colour=palette,
        timeline=timeline(beds, report, palette), burden=burden(report.beds[0], palette),
        embedding_map=embedding_map(report.embedding_map, palette),
        decisions=[(d, decision(d, palette)) for d in report.decisions])
