"""Staff verdicts on logged episodes: the review export (one flat CSV row per episode with its latest staff
annotation) and their agreement with the model's types."""
from __future__ import annotations

import csv
import io
from collections import Counter
from typing import Any

# The crying spell's measures follow its type (list_episodes: 0, or empty for F0, in a log older than spells).
SPELL_COLUMNS = ("length_s", "crying_s", "bouts", "f0_median_hz", "high_pitch_s")
COLUMNS = ("id", "bed", "start", "end", "label", "p", "alert", "windows", *SPELL_COLUMNS, "source", "head", "embedder_id",
           "review_verdict", "review_by", "review_time", "review_note")


# What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"): = + - @, and tab and carriage
# return, which some spreadsheets skip before one.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def to_csv(episodes: list[dict[str, Any]]) -> str:
    """The episodes with their reviews, one row each. Text a spreadsheet would run as a formula (a note such as
    =HYPERLINK(...), a bed named so) is written with a leading single quote, as OWASP recommends, so that it is
    shown as the text staff typed; every text cell is quoted (OWASP's advice too), so a comma, a quote or a line
    break, a carriage return included, stays inside its cell."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n", quoting=csv.QUOTE_NONNUMERIC)
    writer.writeheader()
    for ep in episodes:
        review = ep["review"] or {}
        row = {
            **{k: ep[k] for k in ("id", "bed", "start", "end", "label", "alert", "windows", *SPELL_COLUMNS, "source",
                                  "head", "embedder_id")},
            "p": ep["probs"].get(ep["label"], ""),
            **{f"review_{k}": review.get(k, "") for k in ("verdict", "by", "time", "note")},
        }
        writer.writerow({k: _inert(v) for k, v in row.items()})
    return out.getvalue()


def _inert(value: Any) -> Any:
    """A text cell that would start a formula, shown as text (numbers are left as they are)."""
    return "'" + value if isinstance(value, str) and value.startswith(FORMULA_PREFIXES) else value


def agreement(pairs: Counter) -> dict[str, Any]:
    """Confusion of (staff verdict, type) pairs and precision per type: `evaluate-site`'s and the shift report's."""
    verdicts = sorted({v for v, _ in pairs})
    predicted = sorted({p for _, p in pairs})
    precision = {}
    for label in predicted:
        total = sum(n for (_, p), n in pairs.items() if p == label)
        precision[label] = {"reviewed": total, "confirmed": pairs[(label, label)], "precision": pairs[(label, label)] / total}
    return {"confusion": {"rows": "staff verdict", "columns": "type",
                          "counts": {v: {p: pairs[(v, p)] for p in predicted} for v in verdicts}},
            "precision_by_type": precision}
