"""Crying spells: bouts joined across pauses, with their crying time, pitch and type evidence, and the alarms
they raise (pain on its evidence, crying on its time, high pitch on its hyperphonated time)."""
from monitor.spells.measures import EvidenceRule, PitchTally, TypeEvidence, logit
from monitor.spells.tracker import CRYING, HIGH_PITCH, UNTYPED, Spell, SpellTracker

__all__ = ["CRYING", "HIGH_PITCH", "UNTYPED", "EvidenceRule", "PitchTally", "Spell", "SpellTracker", "TypeEvidence",
           "logit"]
