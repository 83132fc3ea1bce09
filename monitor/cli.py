"""Commands only: parse, call, print. Every expected failure is one line on stderr and exit 2."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import datetime, timezone
from typing import Any

from monitor import model_cmd
from monitor.audio import AudioError
from monitor.bus import BusError
from monitor.classify import HeadError
from monitor.config import ConfigError, Settings, load_settings
from monitor.detect import DetectorError
from monitor.embed import EmbedderError
from monitor.episodes import type_probability
from monitor.store import StoreError

EXPECTED_ERRORS = (ConfigError, AudioError, DetectorError, HeadError, EmbedderError, StoreError, BusError)


def _settings(args: argparse.Namespace, **overrides: dict[str, Any]) -> Settings:
    return load_settings(args.config).with_overrides(**overrides)


def _describe_event(message: dict[str, Any]) -> str | None:
    """The headless log line for a bus message, or None for routine ones."""
    kind, data, t = message["type"], message["data"], message["t"]
    stamp = f"[{message['bed']} {t:8.1f} s]"
    if kind == "episode_opened":
        return f"{stamp} cry episode {data['episode']} started ({data['label']})"
    if kind == "episode_closed":
        alerts = f", alerted: {', '.join(data['alerts'])}" if data["alert"] else ""
        return (f"{stamp} cry episode {data['episode']} ended: {data['start_s']:.1f}-{data['end_s']:.1f} s, "
                f"{data['label']} p={type_probability(data)}{alerts}")
    if kind == "alert_raised":
        return f"{stamp} ALERT {data['label'].upper()} (p={data['probability']:.2f}, episode {data['episode']})"
    if kind == "alert_cleared":
        return f"{stamp} alert {data['label']} cleared"
    if kind == "health" and data["state"] == "service_started":
        return f"{stamp} listening"
    if kind == "health":
        details = ", ".join(f"{k}={v}" for k, v in data.items() if k != "state")
        return f"{stamp} {data['state']}" + (f" ({details})" if details else "")
    return None


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.service import Service

    settings = _settings(args, audio={"input": args.input, "speed": args.speed}, store={"url": args.db},
                         service={"bed": args.bed}, bus={"endpoint": args.bus})
    headless = args.headless or not (sys.stdin.isatty() and sys.stdout.isatty())
    if not args.headless and headless:
        print("crywatch: no terminal, running headless (use --headless to say so)", file=sys.stderr)

    def print_event(message: dict[str, Any]) -> None:
        line = _describe_event(message)
        if line:
            print(line, flush=True)

    service = Service(settings, on_message=print_event if headless else None)
    print(f"crywatch: bed {service.bed}, {service.source.description}\n"
          f"crywatch: embedder {service.models.embedder.id}, head {service.models.head.name}, "
          f"events on {service.bus_endpoint}, log {settings.store.url}", flush=True)
    for label in service.pipeline.classifier.unsupported_alert_classes:
        print(f"crywatch: warning: head {service.models.head.name} has no {label!r} class: "
              f"{label} cries will NOT alert (see its model card)", file=sys.stderr, flush=True)
    if headless:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: service.request_stop())
        summary = service.run()
    else:
        from monitor.tui.app import run_with_service

        summary = run_with_service(service)
    print(f"crywatch: stopped after {summary.windows} windows, {summary.alerts} alerts; run {summary.run_id}; "
          + ("latest episodes:" if summary.episodes else "no cry episodes"), flush=True)
    for ep in summary.episodes:
        print(f"  episode {ep['episode']}: {ep['start_s']:.1f}-{ep['end_s']:.1f} s {ep['label']}"
              f"{' ALERT' if ep['alert'] else ''}")
    if summary.failed:
        print(f"crywatch: error: {summary.failed}", file=sys.stderr)
        return 1
    return 0


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
        print(json.dumps(results, indent=1))
    return 1 if failures else 0


def _parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"--since {text!r} is not an ISO 8601 time: use e.g. 2026-11-27T08:00:00Z") from exc
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def cmd_episodes(args: argparse.Namespace) -> int:
    from monitor.store import list_episodes, open_engine

    settings = _settings(args, store={"url": args.db})
    episodes = list_episodes(open_engine(settings.store.url), _parse_since(args.since), args.bed)
    if args.json:
        print(json.dumps(episodes, indent=1))
        return 0
    if not episodes:
        print("no episodes")
    for ep in episodes:
        end = ep["end"] or "ongoing"
        print(f"{ep['start']}  {end:<32}  {ep['bed']:<10} {ep['label']:<12} "
              f"p={ep['probs'].get(ep['label'], 0):.2f}{'  ALERT' if ep['alert'] else ''}")
    return 0


def cmd_tui(args: argparse.Namespace) -> int:
    from monitor.tui.app import CryWatchApp

    endpoints = args.connect or [_settings(args).bus.endpoint]
    CryWatchApp(endpoints).run()
    return 0


def cmd_devices(_args: argparse.Namespace) -> int:
    from monitor.audio import describe_devices

    print(describe_devices())
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from train.cli import main as train_main

    return train_main(args.train_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crywatch", description="Real-time neonatal cry monitor.")
    parser.add_argument("--config", help="config.toml to use (default: the project's config.toml)")
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
    analyze.add_argument("paths", nargs="+", metavar="PATH")
    analyze.add_argument("--json", action="store_true", help="one JSON object per file")
    analyze.set_defaults(func=cmd_analyze)

    episodes = commands.add_parser("episodes", help="list logged cry episodes")
    episodes.add_argument("--db", help="SQLAlchemy database URL (default: [store] url)")
    episodes.add_argument("--since", help="only episodes ending at or after this ISO 8601 time (UTC if no zone)")
    episodes.add_argument("--bed")
    episodes.add_argument("--json", action="store_true")
    episodes.set_defaults(func=cmd_episodes)

    tui = commands.add_parser("tui", help="dashboard for one or more running monitors")
    tui.add_argument("--connect", nargs="+", metavar="ENDPOINT", help="bus endpoints (default: [bus] endpoint)")
    tui.set_defaults(func=cmd_tui)

    devices = commands.add_parser("devices", help="list microphones")
    devices.set_defaults(func=cmd_devices)

    model_cmd.add_parser(commands)

    train = commands.add_parser("train", help="train or evaluate a head (same as python -m train)", add_help=False)
    train.add_argument("train_args", nargs=argparse.REMAINDER)
    train.set_defaults(func=cmd_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EXPECTED_ERRORS as exc:
        print(f"crywatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
