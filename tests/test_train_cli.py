"""`python -m train evaluate` on a small index of real rows, in a subprocess; bad input fails in one line."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "cries"
MODEL = ROOT / "models" / "acoustic-v1"
PICK = {("corvin", "pain"): 4, ("corvin", "discomfort"): 4, ("donateacry", "hungry"): 4,
        ("donateacry", "belly_pain"): 2, ("esc50", "crying_baby"): 3, ("esc50", "dog"): 2, ("esc50", "siren"): 2,
        ("fsdd", "speech"): 3}


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "train", *args], cwd=cwd, capture_output=True, text=True, timeout=240)


@pytest.fixture(scope="module")
def small_index(tmp_path_factory) -> Path:
    if not (DATA / "index.csv").is_file():
        pytest.skip(f"cry data not present at {DATA} (a fresh machine has none)")
    if not (MODEL / "head.json").is_file():
        pytest.skip(f"no shipped head at {MODEL}")
    with (DATA / "index.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        fields, rows = reader.fieldnames, list(reader)
    chosen, seen = [], {}
    for row in rows:  # first files of distinct groups, so AUCs have more than one group per side
        key = (row["source"], row["label"])
        if seen.get(key, 0) < PICK.get(key, 0) and row["group"] not in {r["group"] for r in chosen}:
            chosen.append({**row, "path": str(DATA / row["path"])})
            seen[key] = seen.get(key, 0) + 1
    folder = tmp_path_factory.mktemp("small")
    with (folder / "index.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(chosen)
    return folder / "index.csv"


def test_evaluate_prints_json_with_per_class_aucs(small_index, tmp_path):
    result = _run("evaluate", "--data", str(small_index), "--model", str(MODEL), "--json",
                  "--cache-dir", str(tmp_path / "cache"), "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert {"file", "window", "tasks", "false_cry_episodes", "gate", "classes", "files"} <= report.keys()
    assert report["files"] == sum(PICK.values())
    per_class = report["file"]["per_class"]
    assert {"not_cry", "pain", "discomfort", "hunger", "other_cry"} <= per_class.keys()
    for entry in per_class.values():
        assert 0.0 <= entry["auc"] <= 1.0 and len(entry["ci95"]) == 2
    for key in ("accuracy", "weighted_f1", "uar", "ece"):
        assert 0.0 <= report["file"][key] <= 1.0
    assert "esc50_cry_vs_not_cry" in report["tasks"]
    assert len(report["file"]["confusion"]["matrix"]) == len(report["classes"])


def test_missing_index_fails_in_one_line(tmp_path):
    result = _run("evaluate", "--data", str(tmp_path / "nope.csv"), "--model", str(MODEL))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "nope.csv" in result.stderr and "--data" in result.stderr


def test_missing_audio_and_unknown_label_fail_in_one_line(tmp_path):
    index = tmp_path / "index.csv"
    index.write_text("path,label,group,source\nmissing.flac,pain,g1,corvin\n")
    result = _run("evaluate", "--data", str(index), "--model", str(MODEL))
    assert result.returncode == 2 and "missing.flac" in result.stderr and result.stderr.strip().count("\n") == 0
    (tmp_path / "here.flac").write_bytes(b"")
    index.write_text("path,label,group,source\nhere.flac,colic,g1,donateacry\n")
    result = _run("evaluate", "--data", str(index), "--model", str(MODEL))
    assert result.returncode == 2 and "'colic'" in result.stderr and "labelmaps.toml" in result.stderr


@pytest.mark.slow
def test_evaluate_reproduces_the_shipped_report(tmp_path):
    model = ROOT / "models" / "acoustic-v2"
    if not (DATA / "index.csv").is_file():
        pytest.skip(f"cry data not present at {DATA} (a fresh machine has none)")
    result = _run("evaluate", "--data", str(DATA / "index.csv"), "--model", str(model), "--split", "heldout",
                  "--detector", str(ROOT / "models" / "cry-detector-v1"),  # the detector it types for
                  "--json", "--cache-dir", str(tmp_path / "cache"), "--workers", "2")
    assert result.returncode == 0, result.stderr[-2000:]
    got = json.loads(result.stdout)
    shipped = json.loads((model / "report.json").read_text())["metrics"]["heldout"]
    for level in ("file", "window"):
        for key in ("n", "accuracy", "weighted_f1", "uar", "ece"):
            assert got[level][key] == pytest.approx(shipped[level][key], abs=1e-4), (level, key)
        for c, entry in shipped[level]["per_class"].items():
            assert got[level]["per_class"][c]["auc"] == pytest.approx(entry["auc"], abs=1e-4)
    for name, task in shipped["tasks"].items():
        assert got["tasks"][name]["file"]["auc"] == pytest.approx(task["file"]["auc"], abs=1e-4)
