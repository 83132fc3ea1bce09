"""Episode export for review: one flat CSV row per episode with its latest staff annotation."""
from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = ("id", "bed", "start", "end", "label", "p", "alert", "windows", "source", "head", "embedder_id",
           "review_verdict", "review_by", "review_time", "review_note")


def to_csv(episodes: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for ep in episodes:
        review = ep["review"] or {}
        writer.writerow({
            **{k: ep[k] for k in ("id", "bed", "start", "end", "label", "alert", "windows", "source", "head",
                                  "embedder_id")},
            "p": ep["probs"].get(ep["label"], ""),
            **{f"review_{k}": review.get(k, "") for k in ("verdict", "by", "time", "note")},
        })
    return out.getvalue()
