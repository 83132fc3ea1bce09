"""`python -m train evaluate-site`: how the running model does on a unit's own reviewed episodes.

Reads the monitor's log only (episodes, staff reviews, run times); it never changes a model.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.engine import Engine

from monitor.store import list_episodes, monitored_seconds


def evaluate_site(engine: Engine) -> dict[str, Any]:
    episodes = list_episodes(engine)
    reviewed = [e for e in episodes if e["review"]]
    pairs = Counter((e["review"]["verdict"], e["label"]) for e in reviewed)
    verdicts = sorted({v for v, _ in pairs})
    predicted = sorted({p for _, p in pairs})
    hours = monitored_seconds(engine) / 3600
    false_episodes = sum(n for (verdict, _), n in pairs.items() if verdict == "not_cry")
    precision = {}
    for label in predicted:
        total = sum(n for (_, p), n in pairs.items() if p == label)
        precision[label] = {"reviewed": total, "confirmed": pairs[(label, label)], "precision": pairs[(label, label)] / total}
    alarmed = [e for e in reviewed if e["alert"]]
    return {
        "episodes": len(episodes), "reviewed": len(reviewed),
        "monitored_hours": round(hours, 3),
        "confusion": {"rows": "staff verdict", "columns": "the monitor's type",
                      "counts": {v: {p: pairs[(v, p)] for p in predicted} for v in verdicts}},
        "precision_by_type": precision,
        "false_episodes": false_episodes,
        "false_episodes_per_monitored_hour": false_episodes / hours if hours else None,
        "alarmed_episodes_confirmed_cry": (sum(e["review"]["verdict"] != "not_cry" for e in alarmed) / len(alarmed)
                                           if alarmed else None),
        "note": "only reviewed episodes count; cries the monitor missed are not in the log",
    }


def describe(result: dict[str, Any]) -> str:
    lines = [f"{result['reviewed']} of {result['episodes']} episodes reviewed, {result['monitored_hours']:.1f} h monitored"]
    counts = result["confusion"]["counts"]
    if not counts:
        return lines[0] + "\nno reviewed episodes yet: review them with `crywatch review`"
    columns = sorted({p for row in counts.values() for p in row})
    lines.append("staff verdict \\ monitor type: " + "  ".join(f"{c:>10}" for c in columns))
    lines += [f"{verdict:>29}: " + "  ".join(f"{row[c]:>10}" for c in columns) for verdict, row in counts.items()]
    for label, p in result["precision_by_type"].items():
        lines.append(f"precision {label}: {p['confirmed']}/{p['reviewed']} = {p['precision']:.2f}")
    per_hour = result["false_episodes_per_monitored_hour"]
    lines.append(f"false episodes (not a cry): {result['false_episodes']}"
                 + (f", {per_hour:.2f} per monitored hour" if per_hour is not None else ""))
    if result["alarmed_episodes_confirmed_cry"] is not None:
        lines.append(f"alarmed episodes that staff confirmed as a cry: {result['alarmed_episodes_confirmed_cry']:.0%}")
    lines.append(f"({result['note']})")
    return "\n".join(lines)
