"""`crywatch report`: a period of the review log as one self-contained HTML page (or JSON).

figures.py computes typed figures from the log, render.py draws them into templates/report.html.j2.
"""
from __future__ import annotations

from monitor.classify import Head
from monitor.config import Settings


def alarm_thresholds(settings: Settings) -> dict[str, float]:
    """The threshold each alerting cry type must reach, as the classifier applies them now: the
    configured head's, overridden by [alerts] thresholds."""
    head = Head.load(settings.classifier.head_path())
    thresholds = {**head.thresholds, **settings.alerts.thresholds}
    return {label: thresholds.get(label, 0.5) for label in settings.alerts.classes if label in head.classes}
