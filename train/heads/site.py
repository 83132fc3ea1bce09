"""`python -m train evaluate-site`: how the running model does on a unit's own reviewed episodes.

Reads the monitor's log only (episodes, staff reviews, run times); it never changes a model.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy.engine import Engine

from monitor.classify import Head, HeadError
from monitor.messages import NOT_CRY
from monitor.store import agreement, episode_embeddings, list_episodes, monitored_seconds


def score_head(engine: Engine, reviewed: list[dict[str, Any]], head: Head) -> dict[str, Any]:
    """Another head on the reviewed episodes' stored embeddings ([store] log_embeddings): its type for an
    episode is the cry type with the highest mean probability over the episode's windows."""
    types = [i for i, c in enumerate(head.classes) if c != NOT_CRY]
    pairs: Counter = Counter()
    missing = 0
    for episode in reviewed:
        vectors = episode_embeddings(engine, episode["id"], head.embedder_id)
        if not len(vectors):
            missing += 1
            continue
        if vectors.shape[1] != head.dim:
            raise HeadError(f"stored {head.embedder_id} vectors have {vectors.shape[1]} dimensions, head {head.name} "
                            f"expects {head.dim}: the log and the head disagree on the embedder")
        mean = head.predict_proba(vectors).mean(axis=0)
        pairs[(episode["review"]["verdict"], head.classes[max(types, key=lambda i: mean[i])])] += 1
    return {"head": head.name, "embedder_id": head.embedder_id, "scored": sum(pairs.values()),
            "without_embeddings": missing, **agreement(pairs)}


def evaluate_site(engine: Engine, head: Head | None = None) -> dict[str, Any]:
    episodes = list_episodes(engine)
    reviewed = [e for e in episodes if e["review"]]
    pairs = Counter((e["review"]["verdict"], e["label"]) for e in reviewed)
    hours = monitored_seconds(engine) / 3600
    false_episodes = sum(n for (verdict, _), n in pairs.items() if verdict == "not_cry")
    alarmed = [e for e in reviewed if e["alert"]]
    return {
        "episodes": len(episodes), "reviewed": len(reviewed),
        "monitored_hours": round(hours, 3),
        **agreement(pairs),
        "false_episodes": false_episodes,
        "false_episodes_per_monitored_hour": false_episodes / hours if hours else None,
        "alarmed_episodes_confirmed_cry": (sum(e["review"]["verdict"] != "not_cry" for e in alarmed) / len(alarmed)
                                           if alarmed else None),
        "note": "only reviewed episodes count; cries the monitor missed are not in the log",
        "candidate": score_head(engine, reviewed, head) if head is not None else None,
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
    candidate = result["candidate"]
    if candidate is not None:
        lines.append(f"head {candidate['head']} on the stored embeddings of {candidate['scored']} reviewed episodes "
                     f"({candidate['without_embeddings']} without):")
        lines += [f"  precision {label}: {p['confirmed']}/{p['reviewed']} = {p['precision']:.2f}"
                  for label, p in candidate["precision_by_type"].items()]
    return "\n".join(lines)
