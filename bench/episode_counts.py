"""How many recordings of each kind give a cry episode through `crywatch analyze`'s pipeline.

Usage: python bench/episode_counts.py [INDEX.csv] [--config config.toml]
Prints a markdown table (source, label, files, files with an episode, files with an alert).
"""
from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

from tqdm import tqdm

from monitor.analyze import analyze_file
from monitor.config import PROJECT_ROOT, load_settings
from monitor.pipeline import Models

DEFAULT_INDEX = PROJECT_ROOT.parent / "shared" / "data" / "cries" / "index.csv"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("index", nargs="?", default=str(DEFAULT_INDEX))
    parser.add_argument("--config")
    args = parser.parse_args()
    index = Path(args.index)
    if not index.is_file():
        print(f"no index at {index}: pass the path of an index.csv", file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    models = Models.load(settings)
    with open(index, newline="") as f:
        rows = list(csv.DictReader(f))
    tally: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in tqdm(rows, desc="analyze", unit="file", file=sys.stderr):
        result = analyze_file(index.parent / row["path"], settings, models)
        counts = tally[(row["source"], row["label"] if row["cry"] == "1" or row["source"] != "esc50" else "non-cry")]
        counts[0] += 1
        counts[1] += bool(result["episodes"])
        counts[2] += any(e["alert"] for e in result["episodes"])
    print(f"head {models.head.name} on {models.embedder.id}, {len(rows)} files from {index}\n")
    print("| source | label | files | with a cry episode | with an alert |\n|---|---|---:|---:|---:|")
    for (source, label), (files, episodes, alerts) in sorted(tally.items()):
        print(f"| {source} | {label} | {files} | {episodes} ({episodes / files:.0%}) | {alerts} ({alerts / files:.0%}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
