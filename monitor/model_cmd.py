"""`crywatch model pull|list`: fetch HeAR weights once, and show which embedders and heads are present."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monitor.config import PROJECT_ROOT, Settings, load_settings
from monitor.embed import OFFLINE_EMBEDDERS
from monitor.embed.base import EmbedderError
from monitor.embed.hear import (
    MARKERS,
    REPOS,
    HearWeights,
    cache_root,
    check_weights,
    dir_commit,
    download,
    locate_weights,
    revision_for,
)

MODELS_ROOT = PROJECT_ROOT / "models"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add `model pull` and `model list` to a CLI's subcommands."""
    model = subparsers.add_parser("model", help="download embedder weights, list embedders and heads")
    actions = model.add_subparsers(dest="model_command", required=True)
    pull = actions.add_parser("pull", help="download HeAR weights once (needs Hugging Face access)")
    pull.add_argument("name", choices=["hear"])
    pull.add_argument("--backend", choices=["torch", "tf"],
                      help="torch = google/hear-pytorch, tf = google/hear (default: [hear] backend, else torch)")
    pull.add_argument("--revision", help="commit, branch or tag (default: [hear] revision)")
    pull.add_argument("--dir", help="download into this folder (for [hear] model_dir) instead of the HF cache")
    actions.add_parser("list", help="embedders whose weights are present, and the trained heads")
    model.set_defaults(func=run)
    return model


def run(args: argparse.Namespace) -> int:
    """Exit code: 0 on success, 2 with a one-line error on stderr otherwise."""
    settings = load_settings(getattr(args, "config", None))
    try:
        if args.model_command == "pull":
            print(pull(settings, args.backend, args.revision, args.dir))
        else:
            print(list_models(settings))
    except EmbedderError as exc:
        print(f"crywatch: error: {exc}", file=sys.stderr)
        return 2
    return 0


def pull(settings: Settings, backend: str | None = None, revision: str | None = None,
         folder: str | None = None) -> str:
    """Download (or find) one backend's weights and say where they are and how to use them."""
    hear = settings.hear
    backend = backend or (hear.backend if hear.backend in ("tf", "torch") else "torch")
    revision = revision or revision_for(backend, hear)
    path = download(backend, revision, hear.cache_dir, local_dir=folder or "")
    commit = dir_commit(path, MARKERS[backend], revision) if folder else path.name  # snapshots are named by commit
    check_weights(HearWeights(backend, path, commit))
    where = f', model_dir = "{path}"' if folder else ""
    return (f"{REPOS[backend]} at revision {commit} is in {path}\n"
            f"to use it, in config.toml: [classifier] embedder = \"hear\"; "
            f"[hear] backend = \"{backend}\", revision = \"{commit}\"{where}")


def present_embedders(settings: Settings) -> list[tuple[str, str]]:
    """(id, where) for each embedder that can run here: built-ins, HeAR snapshots in the cache, [hear] model_dir."""
    found = [(name, "built in") for name in OFFLINE_EMBEDDERS]
    root = cache_root(settings.hear.cache_dir)
    for backend, repo in REPOS.items():
        for marker in sorted(root.glob(f"models--{repo.replace('/', '--')}/snapshots/*/{MARKERS[backend]}")):
            weights = HearWeights(backend, marker.parent, marker.parent.name)
            found.append((weights.embedder_id, str(weights.path)))
    if settings.hear.model_dir:
        try:
            weights = locate_weights(settings.hear)
            found.append((weights.embedder_id, f"{weights.path} ([hear] model_dir)"))
        except EmbedderError as exc:
            found.append(("hear (model_dir)", f"unusable: {exc}"))
    return found


def list_models(settings: Settings, models_root: Path = MODELS_ROOT) -> str:
    embedders = present_embedders(settings)
    ids = {embedder_id for embedder_id, _ in embedders}
    lines = ["embedders:"] + [f"  {embedder_id:<26} {where}" for embedder_id, where in embedders]
    lines.append(f"heads ({models_root}):")
    heads = sorted(models_root.glob("*/head.json"))
    lines += [_head_line(path, ids) for path in heads] or ["  (none)"]
    return "\n".join(lines)


def _head_line(path: Path, present: set[str]) -> str:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
        name, embedder_id = meta.get("name", path.parent.name), meta["embedder_id"]
        dim, classes = meta["dim"], ", ".join(meta.get("classes", []))
    except (OSError, ValueError, KeyError) as exc:
        return f"  {path.parent.name:<26} unreadable head.json ({type(exc).__name__}: {exc})"
    status = "ready" if embedder_id in present else "embedder not present"
    return f"  {name:<26} embedder {embedder_id}  dim {dim}  classes {classes}  [{status}]"
