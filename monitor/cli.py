"""Commands only: parse, call, print. Every expected failure is one line on stderr and exit 2."""
# ruff: noqa: E402 - SIGHUP is held (below) before the imports, which take seconds on a bedside PC
from __future__ import annotations

import signal
import threading

# `systemctl reload` (SIGHUP) may come while the monitor is still starting (these imports and the models take
# seconds), and Python's default for it ends the process (exit 129). Held from here on: `main` hands a held one to
# the service once it runs, or restores the default and sends it again for a command that does not reload.
_HANGUP = threading.Event()
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGHUP, lambda _number, _frame: _HANGUP.set())

import argparse
import json
import logging
import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, TextIO

from monitor import model_cmd
from monitor.audio import AudioError
from monitor.bus import BusError, Envelope
from monitor.classify import HeadError
from monitor.config import ConfigError, Settings, load_settings
from monitor.detect import DetectorError
from monitor.embed import EmbedderError
from monitor.messages import (
    AlarmAcknowledged,
    AlarmAnnounced,
    AlarmCleared,
    AlarmRaised,
    AlarmSilenced,
    EpisodeClosed,
    EpisodeOpened,
    ServiceStatus,
    duration,
    percent,
    type_probability,
)
from monitor.store import EpisodeFilter, StoreError, redact_url
from monitor.workers import LineHandler, LineWriter

_LOGGER = logging.getLogger(__name__)

if TYPE_CHECKING:
    from monitor.service import RunSummary, Service

EXPECTED_ERRORS = (ConfigError, AudioError, DetectorError, HeadError, EmbedderError, StoreError, BusError)


def _settings(args: argparse.Namespace, **overrides: dict[str, Any]) -> Settings:
    return load_settings(args.config).with_overrides(**overrides)


def _describe_event(envelope: Envelope) -> str | None:
    """The headless log line for an event, or None for routine ones."""
    stamp = f"[{envelope.bed} {envelope.t:8.1f} s]"
    match envelope.event:
        case EpisodeOpened(episode=ep):
            return f"{stamp} cry episode {ep.number} started ({ep.label})"
        case EpisodeClosed(episode=ep):
            alerts = f", alerted: {', '.join(ep.alerts)}" if ep.alerts else ""
            return (f"{stamp} cry episode {ep.number} ended: {ep.start_s:.1f}-{ep.end_s:.1f} s, "
                    f"{ep.label} p={ep.type_probability()}{alerts}")
        case AlarmRaised(alarm=alarm) | AlarmAnnounced(alarm=alarm):
            again = f" (announced {alarm.announcements}x, unacknowledged)" if alarm.announcements > 1 else ""
            cause = f" p={alarm.probability:.2f}, episode {alarm.episode}" if alarm.probability is not None else ""
            return f"{stamp} ALARM {alarm.id} [{alarm.priority.value}] {alarm.message}{cause}{again}"
        case AlarmAcknowledged(alarm=alarm):
            return f"{stamp} alarm {alarm.id} ({alarm.label}) acknowledged by {alarm.acknowledged_by}"
        case AlarmSilenced(alarm=alarm):
            return f"{stamp} alarm {alarm.id} ({alarm.label}) audio paused until {alarm.silenced_until}"
        case AlarmCleared(alarm=alarm, reason=reason):
            return f"{stamp} alarm {alarm.id} ({alarm.label}) cleared: {reason}"
        case ServiceStatus(state="started"):
            return f"{stamp} listening"
        case ServiceStatus(state=state, detail=detail):
            details = ", ".join(f"{k}={v}" for k, v in detail.items())
            return f"{stamp} {state}" + (f" ({details})" if details else "")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.service import Service  # loads the models' libraries: only for the commands that run them

    overrides: dict[str, dict[str, Any]] = {"audio": {"input": args.input, "speed": args.speed}, "store": {"url": args.db},
                                            "service": {"bed": args.bed}, "bus": {"endpoint": args.bus}}
    settings = _settings(args, **overrides)
    headless = args.headless or not (sys.stdin.isatty() and sys.stdout.isatty())
    # Headless, stdout and stderr are pipes or journald: one nobody reads must never stall a stage. stderr's
    # writer is main's, the one logging writes through, so error lines and log lines keep their order.
    out = LineWriter(sys.stdout.fileno()) if headless else None
    err: LineWriter | None = args.stderr_lines if headless else None
    if not args.headless and err is not None:
        err.write_line("crywatch: no terminal, running headless (use --headless to say so)")
    try:
        summary = _run_service(Service, settings, headless, out, err, reload=lambda: _settings(args, **overrides),
                               log_lines=args.stderr_lines)
        if summary.failed and summary.input_error is None:
            if err is not None:
                err.write_line(f"crywatch: error: {summary.failed}")
            else:
                print(f"crywatch: error: {summary.failed}", file=sys.stderr)
    finally:
        if out is not None:
            out.close(timeout_s=0.5)
    if summary.input_error is not None:  # a file that broke off midway: one line (main's), exit 2
        raise summary.input_error
    return 1 if summary.failed else 0


def _run_service(service_type: type[Service], settings: Settings, headless: bool, out: LineWriter | None,
                 err: LineWriter | None, reload: Callable[[], Settings], log_lines: LineWriter | None = None) -> RunSummary:
    def say(line: str, writer: LineWriter | None = out, file: TextIO = sys.stdout) -> None:
        if writer is not None:
            writer.write_line(line)
        else:
            print(line, file=file, flush=True)

    def print_event(envelope: Envelope) -> None:
        line = _describe_event(envelope)
        if line:
            say(line)

    service = service_type(settings, on_message=print_event if headless else None)
    models = service.models
    served = (f" from {models.failover.remote.url} (fallback {models.failover.fallback.id}, head "
              f"{models.fallback_head.name})" if models.failover is not None and models.fallback_head is not None else "")
    say(f"crywatch: bed {service.bed}, {service.source.description}\n"
        f"crywatch: embedder {models.embedder.id}{served}, head {models.head.name}, "
        f"events on {service.bus_endpoint}, control on {service.control_endpoint}, log {redact_url(settings.store.url)}")
    for label in service.pipeline.classifier.unsupported_alert_classes:
        say(f"crywatch: warning: head {service.models.head.name} has no {label!r} class: "
            f"{label} cries will NOT alert (see its model card)", err, sys.stderr)
    if headless:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda number, _frame: service.request_stop(signal.Signals(number).name))
        # systemctl reload: alert settings change without a gap in monitoring (docs/operations.md)
        signal.signal(signal.SIGHUP, lambda *_: service.request_reload(reload))
        if _HANGUP.is_set():  # one that came during start-up: the file may have changed after it was read
            _LOGGER.info("a reload (SIGHUP) came during start-up: reading the config again")
            service.request_reload(reload)
        summary = service.run()
    else:
        from monitor.tui.app import run_with_service

        summary = run_with_service(service)
    closing = [f"crywatch: stopped after {summary.windows} windows, {summary.alerts} alerts; run {summary.run_id}; "
               + ("latest episodes:" if summary.episodes else "no cry episodes")]
    closing += [f"  episode {ep.number}: {ep.start_s:.1f}-{ep.end_s:.1f} s {ep.label}{' ALERT' if ep.alerts else ''}"
                for ep in summary.episodes]
    # The log's lines so far first (those a dashboard held while it was up are written only now, by the log's own
    # writer thread), then the summary in one write: a log line once landed inside it.
    if log_lines is not None:
        log_lines.drain(timeout_s=1.0)
    say("\n".join(closing))
    return summary


def cmd_analyze(args: argparse.Namespace) -> int:
    from monitor.analyze import analyze_file, describe
    from monitor.pipeline import Models

    settings = _settings(args)
    models = Models.load(settings)
    results, failures = [], 0
    for path in args.paths:
        try:
            result = analyze_file(path, settings, models)
        except AudioError as exc:
            failures += 1
            result = {"path": path, "error": str(exc)}
            print(f"crywatch: error: {exc}", file=sys.stderr)
        results.append(result)
        if not args.json and "error" not in result:
            print(describe(result), flush=True)
    if args.json:
        print(json.dumps(results, indent=1, allow_nan=False))
    return 2 if failures else 0  # unusable input is the user's to fix, like every other expected error


def _parse_since(text: str | None, option: str = "--since") -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{option} {text!r} is not an ISO 8601 time: use e.g. 2026-11-27T08:00:00Z") from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _episode_filter(args: argparse.Namespace) -> EpisodeFilter:
    from monitor.store import EpisodeFilter

    alarm = {"yes": True, "no": False, None: None}[args.alarm]
    return EpisodeFilter(_parse_since(args.since), args.bed, args.type, alarm, args.unreviewed)


def cmd_episodes(args: argparse.Namespace) -> int:
    from monitor.store import list_episodes, open_engine, to_csv

    settings = _settings(args, store={"url": args.db})
    episodes = list_episodes(open_engine(settings.store.url), _episode_filter(args))
    if args.format == "json":
        print(json.dumps(episodes, indent=1, allow_nan=False))
        return 0
    if args.format == "csv":
        sys.stdout.write(to_csv(episodes))
        return 0
    if not episodes:
        print("no episodes")
    for ep in episodes:
        print(_episode_line(ep))
    return 0


def _episode_line(ep: dict[str, Any]) -> str:
    """One logged crying spell for `crywatch episodes`: when, where, its type, its length (to its newest cry frame
    while it goes on), its crying time (pauses not counted) and the high-pitched share of its voiced crying."""
    end = ep["end"] or "ongoing"
    if ep["interrupted"]:
        end += " (interrupted)"
    review = f"  reviewed: {ep['review']['verdict']} ({ep['review']['by']})" if ep["review"] else ""
    return (f"{ep['id']:>5} {ep['start']}  {end:<32}  {ep['bed']:<10} {ep['label']:<12} "
            f"p={type_probability(ep['probs'], ep['label'])}  length {duration(ep['length_s']):>5}  "
            f"crying {duration(ep['crying_s']):>5}  high-pitched {percent(ep['high_pitch_share']):>5}"
            f"{'  ALERT' if ep['alert'] else ''}{review}")


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import timedelta
    from pathlib import Path

    from monitor.report import alarm_thresholds
    from monitor.report.figures import Period, build_report, to_json
    from monitor.store import open_engine

    settings = _settings(args, store={"url": args.db})
    until = _parse_since(args.until, "--until") or datetime.now(timezone.utc)
    since = _parse_since(args.since) or until - timedelta(hours=12)
    if since >= until:
        raise ConfigError(f"--since {since.isoformat()} is not before --until {until.isoformat()}: swap them")
    report = build_report(open_engine(settings.store.url), Period(since, until, args.bed), alarm_thresholds(settings),
                          tuple(args.episode or ()))
    if report.period.since != since:
        _LOGGER.warning("%s", report.notes[0])
    if args.format == "json":
        text = json.dumps(to_json(report), indent=1, allow_nan=False)
        if args.out is None:
            print(text)
            return 0
        Path(args.out).write_text(text + "\n")
    else:
        from monitor.report.render import render_html

        args.out = args.out or f"crywatch-report-{until:%Y%m%dT%H%M%SZ}.html"
        Path(args.out).write_text(render_html(report))
    print(Path(args.out).resolve())
    return 0


def cmd_annotate(args: argparse.Namespace) -> int:
    from monitor.alarms import AlarmError, check_initials
    from monitor.store import annotate, open_engine

    settings = _settings(args, store={"url": args.db})
    try:
        by = check_initials(args.by)
    except AlarmError as exc:
        raise ConfigError(f"--by: {exc}") from exc
    review = annotate(open_engine(settings.store.url), args.episode, args.verdict, by, args.note)
    print(f"episode {args.episode}: {review['verdict']} by {review['by']} at {review['time']}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    from monitor.store import open_engine
    from monitor.tui.app import run_app
    from monitor.tui.review import ReviewApp

    settings = _settings(args, store={"url": args.db})
    run_app(ReviewApp(open_engine(settings.store.url), _episode_filter(args)))
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from monitor.bus import Subscriber
    from monitor.bus.keys import load_dashboard_keys
    from monitor.tui.app import CryWatchApp, run_app

    settings = _settings(args, store={"url": args.db})
    endpoints = args.connect or [settings.bus.endpoint]
    folder = args.keys or settings.bus.keys
    keys = load_dashboard_keys(folder) if folder else None
    Subscriber(endpoints).close()  # a bad endpoint is one line here, not a traceback inside the app
    run_app(CryWatchApp(endpoints, review_db=settings.store.url, keys=keys))
    return 0


def cmd_keys(args: argparse.Namespace) -> int:
    from monitor.bus.keys import make_keys

    make_keys(args.folder)
    print(f"crywatch: CURVE keys for a unit in {args.folder}: on bedside PCs set [bus] keys = \"{args.folder}\" "
          "(monitor.key_secret stays there); give dashboard PCs a copy without monitor.key_secret")
    return 0


def cmd_devices(_args: argparse.Namespace) -> int:
    from monitor.audio import describe_devices

    print(describe_devices())
    return 0


def cmd_serve_embedder(args: argparse.Namespace) -> int:
    try:
        from monitor.serve import serve_embedder
    except ImportError as exc:
        raise ConfigError(f"serve-embedder needs Ray Serve ({exc.name} is not installed): "
                          "pip install 'crywatch[serve]'") from exc

    settings = _settings(args, serve={"host": args.host, "port": args.port})
    serve_embedder(settings, on_ready=lambda line: print(f"crywatch: {line}", flush=True))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from train.cli import main as train_main

    return train_main(args.train_args)


def _filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", help="SQLAlchemy database URL (default: [store] url)")
    parser.add_argument("--since", help="only episodes ending at or after this ISO 8601 time (UTC if no zone)")
    parser.add_argument("--bed")
    parser.add_argument("--type", help="only episodes of this cry type")
    parser.add_argument("--alarm", choices=("yes", "no"), help="only episodes with (yes) or without (no) an alarm")
    parser.add_argument("--unreviewed", action="store_true", help="only episodes nobody has reviewed yet")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crywatch", description="Real-time neonatal cry monitor.")
    parser.add_argument("--config", help="config.toml to use (default: the project's config.toml)")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"), default="warning",
                        help="what goes to stderr (journald) besides the events themselves")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the monitor service (with the dashboard unless --headless)")
    run.add_argument("--input", help="mic, an audio file, or scenario:NAME (nicu, quiet)")
    run.add_argument("--speed", type=float, help="file/scenario playback speed: 1 = real time, 0 = fastest")
    run.add_argument("--db", help="SQLAlchemy database URL for the log, e.g. sqlite:///crywatch.db")
    run.add_argument("--bed", help="bed identifier written with every event")
    run.add_argument("--bus", help="ZeroMQ endpoint to publish events on")
    run.add_argument("--headless", action="store_true", help="no dashboard; print events")
    run.set_defaults(func=cmd_run)

    analyze = commands.add_parser("analyze", help="run the pipeline over recordings as fast as possible")
    analyze.add_argument("paths", nargs="+", metavar="PATH", help="audio files, or scenario:NAME (nicu, quiet)")
    analyze.add_argument("--json", action="store_true", help="one JSON object per file")
    analyze.set_defaults(func=cmd_analyze)

    episodes = commands.add_parser("episodes", help="list or export logged cry episodes")
    _filter_arguments(episodes)
    episodes.add_argument("--format", choices=("text", "json", "csv"), default="text",
                          help="json and csv include each episode's review (export)")
    episodes.add_argument("--json", dest="format", action="store_const", const="json", help="same as --format json")
    episodes.set_defaults(func=cmd_episodes)

    review = commands.add_parser("review", help="review logged episodes: timelines and staff annotation")
    _filter_arguments(review)
    review.set_defaults(func=cmd_review)

    report = commands.add_parser("report", help="the shift report of a period: one self-contained HTML page, or JSON")
    report.add_argument("--db", help="SQLAlchemy database URL (default: [store] url)")
    report.add_argument("--since", help="start, ISO 8601 (UTC if no zone; default: 12 h before --until)")
    report.add_argument("--until", help="end, ISO 8601 (UTC if no zone; default: now)")
    report.add_argument("--bed", help="only this bed (default: every bed and the unit)")
    report.add_argument("--episode", type=int, action="append", metavar="ID",
                        help="draw why the monitor decided as it did for this episode (repeatable; default: the newest "
                             "episodes with an alarm or a review)")
    report.add_argument("--format", choices=("html", "json"), default="html", help="json: the same figures, for other tools")
    report.add_argument("--out", help="file to write (default: crywatch-report-UNTIL.html here; json: stdout)")
    report.set_defaults(func=cmd_report)

    annotate = commands.add_parser("annotate", help="store a review of one episode")
    annotate.add_argument("episode", type=int, help="episode id (first column of `crywatch episodes`)")
    annotate.add_argument("verdict", help="the confirmed cry type, not_cry or other")
    annotate.add_argument("--by", required=True, help="staff initials")
    annotate.add_argument("--note", default="")
    annotate.add_argument("--db", help="SQLAlchemy database URL (default: [store] url)")
    annotate.set_defaults(func=cmd_annotate)

    tui = commands.add_parser("tui", help="dashboard for one or more running monitors")
    tui.add_argument("--connect", nargs="+", metavar="ENDPOINT", help="bus endpoints (default: [bus] endpoint)")
    tui.add_argument("--db", help="the log `r` opens for review (default: [store] url)")
    tui.add_argument("--keys", help="CURVE keys folder for monitors that bind beyond loopback (default: [bus] keys)")
    tui.set_defaults(func=cmd_tui)

    keys = commands.add_parser("keys", help="make CURVE keys so a bus can leave this PC safely")
    keys.add_argument("folder", help="an empty folder to write the unit's keys into")
    keys.set_defaults(func=cmd_keys)

    devices = commands.add_parser("devices", help="list microphones")
    devices.set_defaults(func=cmd_devices)

    serve = commands.add_parser("serve-embedder", help="serve HeAR to the monitors of a unit ([serve], [hear])")
    serve.add_argument("--host", help="address to listen on (default: [serve] host)")
    serve.add_argument("--port", type=int, help="port (default: [serve] port)")
    serve.set_defaults(func=cmd_serve_embedder)

    model_cmd.add_parser(commands)

    train = commands.add_parser("train", help="train or evaluate a head (same as python -m train)", add_help=False)
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=cmd_train)
    return parser


def _configure_logging(level: str, dashboard: bool) -> LineWriter | None:
    """One line per event to stderr (journald reads it) through a LineWriter, so a stderr nobody reads
    never blocks a stage; inside a dashboard, to Textual's log instead, so they do not scribble over the
    screen. Returns the writer, for main to drain at the end."""
    from textual.logging import TextualHandler

    err = None if dashboard else LineWriter(sys.stderr.fileno())
    handler = TextualHandler() if err is None else LineHandler(err)
    logging.basicConfig(level=level.upper(), format="crywatch: %(levelname)s %(name)s: %(message)s",
                        handlers=[handler])
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().level))
    logging.captureWarnings(err is not None)  # Python's warnings write to stderr directly otherwise
    return err


def _hangup_ends_unless_reloading(args: argparse.Namespace) -> None:
    """Only the headless monitor reloads on SIGHUP; anything else (a dashboard whose terminal hung up, a report)
    ends as it always did, a hangup held during start-up included."""
    if args.command == "run" and (args.headless or not (sys.stdin.isatty() and sys.stdout.isatty())):
        return
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        if _HANGUP.is_set():
            signal.raise_signal(signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _hangup_ends_unless_reloading(args)
    err = _configure_logging(args.log_level, dashboard=args.command in ("tui", "review"))
    args.stderr_lines = err  # the commands' own stderr lines go the same way as the log's
    try:
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        if err is not None:
            err.write_line(f"crywatch: error: {exc}")
        else:
            print(f"crywatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:
        if err is not None:
            err.close(timeout_s=1.0)  # what is logged gets out, unless nobody reads stderr at all


if __name__ == "__main__":
    sys.exit(main())
