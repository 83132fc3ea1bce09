"""Label maps (train/labelmaps.toml): a data set's (source, label) → a head class."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from monitor.messages import NOT_CRY

LABELMAPS = Path(__file__).with_name("labelmaps.toml")
CRYWATCH = "crywatch"
SEED = "seed"
NEUROLOGICAL = "neurological"


class LabelError(ValueError):
    """A label no rule covers; the message names it and the fix."""


@dataclass(frozen=True)
class LabelMap:
    """Rule lookup "source:label" → "label" → "source:*"."""

    name: str
    vocabulary: tuple[str, ...]
    rules: dict[str, str]

    def __call__(self, source: str, label: str, path: str = "") -> str:
        for key in (f"{source}:{label}", label, f"{source}:*"):
            if key in self.rules:
                return self.rules[key]
        raise LabelError(
            f"label {label!r} of source {source!r} is not in label map {self.name!r}: "
            f"add \"{source}:{label}\" or \"{label}\" to [{self.name}.rules] in {LABELMAPS}"
        )


@dataclass(frozen=True)
class KeywordMap:
    """The seed study's rule: first keyword found in the lower-cased path wins, then the reason code.

    Returns None for a file the seed would have left unlabelled.
    """

    name: str
    vocabulary: tuple[str, ...]
    path_template: str
    keywords: tuple[tuple[str, tuple[str, ...]], ...]
    codes: dict[str, str]

    def __call__(self, source: str, label: str, path: str = "") -> str | None:
        text = self.path_template.format(label=label, path=path, source=source).lower()
        for target, words in self.keywords:
            if any(word in text for word in words):
                return target
        code = PurePosixPath(text).stem.rsplit("-", 1)[-1]
        return self.codes.get(code)


def load_label_map(name: str = CRYWATCH, path: Path = LABELMAPS) -> LabelMap | KeywordMap:
    tables = tomllib.loads(path.read_text())
    if name not in tables:
        raise LabelError(f"no label map {name!r} in {path}: use one of {', '.join(tables)}")
    table = tables[name]
    if "keywords" in table:
        return KeywordMap(
            name=name, vocabulary=tuple(table["vocabulary"]), path_template=table["path_template"],
            keywords=tuple((k["label"], tuple(k["words"])) for k in table["keywords"]),
            codes=dict(table["codes"]),
        )
    label_map = LabelMap(name=name, vocabulary=tuple(table["vocabulary"]), rules=dict(table["rules"]))
    unknown = set(label_map.rules.values()) - set(label_map.vocabulary)
    if unknown:
        raise LabelError(f"label map {name!r} maps to {sorted(unknown)} outside its vocabulary: fix {path}")
    if NOT_CRY not in label_map.vocabulary:
        raise LabelError(f"label map {name!r} has no {NOT_CRY!r} class: the head needs one ({path})")
    return label_map
