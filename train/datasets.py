"""Labelled recordings from an index.csv or a folder per label."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from train.labels import KeywordMap, LabelMap

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
REQUIRED_COLUMNS = ("path", "label", "group")
# One group namespace per origin, across collections: a Donate-a-cry installation (cleaned cries in
# ../cries/donateacry, raw uploads in ../more/donateacry_raw) or a Freesound source recording (cut
# into ESC-50 and UrbanSound8K clips) is one unit however many sources hold it.
GROUP_NAMESPACE = {"donateacry_raw": "donateacry", "esc50": "freesound", "us8k": "freesound"}
# Sources whose `label` is not a cry label (donateacry_raw: YAMNet's top class): the label map sees
# "cry" or "not_cry" from the `cry` column, and a row whose `cry` is empty (unknown) is left out, since
# an unknown clip would teach the detector, or score it on, whichever side we guessed.
CRY_COLUMN_SOURCES = frozenset({"donateacry_raw"})
MORE_COLLECTION = "more"  # ../shared/data/more: the second collection, beside the cries one


class DataError(ValueError):
    """Unusable data set input; the message names the thing and the fix."""


@dataclass(frozen=True)
class Record:
    """One labelled recording. `group` is the unit that never straddles a split."""

    path: Path  # absolute
    rel: str  # as written in the index (or relative to the folder)
    source: str
    label: str  # the data set's own label
    target: str  # the class after the label map
    group: str

    @property
    def key(self) -> str:
        """Group namespaced by source: two corpora may reuse an id for different people."""
        return f"{self.source}/{self.group}"

    @property
    def split_key(self) -> str:
        """The group across collections (GROUP_NAMESPACE): what splits and the leakage check keep on one side."""
        return f"{GROUP_NAMESPACE.get(self.source, self.source)}/{self.group}"


def read_index(index: Path, label_map: LabelMap | KeywordMap) -> list[Record]:
    """Rows of index.csv (paths relative to its folder). Columns: path, label, group[, source].

    Rows a keyword map leaves unlabelled (None) are skipped, as the seed study skipped them, and so are
    rows of a CRY_COLUMN_SOURCES source whose `cry` is empty (unknown).
    """
    index = Path(index)
    if not index.is_file():
        raise DataError(f"index {index} not found: pass --data PATH/index.csv (or a folder with one sub-folder per label)")
    with index.open(newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise DataError(f"index {index} lacks column(s) {', '.join(missing)}: add them (path, label, group[, source])")
        rows = list(reader)
    if not rows:
        raise DataError(f"index {index} has no rows: point --data at a non-empty index")
    records = []
    for row in rows:
        path = (index.parent / row["path"]).resolve()
        if not path.is_file():
            raise DataError(f"audio file {path} (index {index}, row {row['path']!r}) not found: fix the path or the row")
        source = row.get("source") or Path(row["path"]).parts[0]
        label = row["label"]
        if source in CRY_COLUMN_SOURCES:
            if row.get("cry", "") not in ("0", "1"):
                continue
            label = "cry" if row["cry"] == "1" else "not_cry"
        target = label_map(source, label, row["path"])
        if target is None:
            continue
        records.append(Record(path, row["path"], source, row["label"], target, row["group"]))
    return records


def read_folder(root: Path, label_map: LabelMap | KeywordMap) -> list[Record]:
    """root/<label>/<file>: every file is its own group, since a folder says nothing about speakers."""
    root = Path(root)
    records = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(p for p in label_dir.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            rel = path.relative_to(root).as_posix()
            target = label_map(root.name, label_dir.name, rel)
            if target is not None:
                records.append(Record(path.resolve(), rel, root.name, label_dir.name, target, path.stem))
    if not records:
        raise DataError(f"no audio under {root}/<label>/: expected wav/flac/ogg files in one folder per label")
    return records


def read_dataset(data: Path, label_map: LabelMap | KeywordMap) -> list[Record]:
    data = Path(data)
    if data.is_dir():
        return read_index(data / "index.csv", label_map) if (data / "index.csv").is_file() else read_folder(data, label_map)
    return read_index(data, label_map)


def more_index(data: Path, more: Path | None = None) -> Path:
    """`more`, else the second collection's index beside the cries data (../more/index.csv)."""
    if more is not None:
        return Path(more)
    data = Path(data)
    beside = (data if data.is_dir() else data.parent).parent / MORE_COLLECTION / "index.csv"
    if not beside.is_file():
        raise DataError(f"no second collection at {beside}: pass --more PATH/index.csv")
    return beside
