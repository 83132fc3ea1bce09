"""Run folder output: report.json, report.md with PNG plots, and the model card."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_curve

from train.heads.evaluate import Scored

SET_TITLES = {"heldout": "Grouped held-out test set (the shipped head)",
              "cv": "Grouped 5-fold cross-validation (out-of-fold, one head per fold)"}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, default=_plain) + "\n")


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# ---------------------------------------------------------------------------------------------
# Plots


def plot_set(folder: Path, tag: str, scored: Scored, metrics: dict) -> list[str]:
    """ROC (file level, one vs rest), confusion matrix and reliability diagram; returns file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = []
    index = {c: i for i, c in enumerate(scored.classes)}
    y = np.array([index.get(r.target, -1) for r in scored.records])
    fig, ax = plt.subplots(figsize=(5, 5))
    for k, c in enumerate(scored.classes):
        if (y == k).any() and (y != k).any():
            fpr, tpr, _ = roc_curve(y == k, scored.file_probs[:, k])
            ax.plot(fpr, tpr, label=f"{c} (AUC {metrics['file']['per_class'][c]['auc']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC, file level ({tag})")
    ax.legend(loc="lower right", fontsize=8)
    names.append(_save(fig, folder / f"roc_{tag}.png"))

    matrix = np.array(metrics["file"]["confusion"]["matrix"])
    fig, ax = plt.subplots(figsize=(5, 4.5))
    ax.imshow(matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ticks = range(len(scored.classes))
    ax.set_xticks(ticks, scored.classes, rotation=45, ha="right")
    ax.set_yticks(ticks, scored.classes)
    ax.set(xlabel="predicted", ylabel="true", title=f"Confusion, file level ({tag})")
    names.append(_save(fig, folder / f"confusion_{tag}.png"))

    fig, ax = plt.subplots(figsize=(5, 5))
    for level, style in (("window", "o-"), ("file", "s--")):
        bins = metrics[level]["reliability"]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style,
                label=f"{level} (ECE {metrics[level]['ece']:.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="confidence (top class)", ylabel="accuracy", title=f"Reliability ({tag})", xlim=(0, 1), ylim=(0, 1))
    ax.legend(loc="upper left", fontsize=8)
    names.append(_save(fig, folder / f"reliability_{tag}.png"))
    return names


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


# ---------------------------------------------------------------------------------------------
# Markdown


def _ci(entry: dict) -> str:
    low, high = entry["ci95"]
    return f"{entry['auc']:.3f} [{low:.3f}, {high:.3f}]"


def metrics_markdown(title: str, metrics: dict, plots: list[str]) -> list[str]:
    lines = [f"### {title}", "", "| level | n | accuracy | weighted F1 | UAR | ECE |", "|---|---:|---:|---:|---:|---:|"]
    for level in ("file", "window"):
        m = metrics[level]
        lines.append(f"| {level} | {m['n']} | {m['accuracy']:.3f} | {m['weighted_f1']:.3f} | {m['uar']:.3f} | {m['ece']:.3f} |")
    lines += ["", "Per class, one vs rest (ROC AUC with group-bootstrap 95 % CI):", "",
              "| class | files | file AUC | file recall | windows | window AUC |", "|---|---:|---:|---:|---:|---:|"]
    for c, f in metrics["file"]["per_class"].items():
        w = metrics["window"]["per_class"].get(c)
        window = f"{w['support']} | {_ci(w)}" if w else "0 | —"
        lines.append(f"| {c} | {f['support']} | {_ci(f)} | {f['recall']:.3f} | {window} |")
    lines += ["", "Within-corpus tasks (corpus identity cannot help here):", "",
              "| task | file AUC [95 % CI] | window AUC [95 % CI] | groups | what |", "|---|---:|---:|---:|---|"]
    for name, t in metrics["tasks"].items():
        file, window = t.get("file"), t.get("window")
        lines.append(f"| {name} | {_ci(file) if file else '—'} | {_ci(window) if window else '—'} | "
                     f"{file['groups'] if file else '—'} | {t['what']} |")
    lines += ["", "Non-cry recordings (the gate, then the monitor's smoother at cry threshold 0.5):", "",
              "| source | files | files the gate opened | files with a cry episode |", "|---|---:|---:|---:|"]
    for source, e in metrics["false_cry_episodes"].items():
        lines.append(f"| {source} | {e['files']} | {e['files_with_gated_window']} | {e['files_with_cry_episode']} |")
    lines += ["", "Gate coverage (recordings with at least one window the head hears):", "",
              "| class | files | files gated | gated windows |", "|---|---:|---:|---:|"]
    for c, g in metrics["gate"].items():
        lines.append(f"| {c} | {g['files']} | {g['files_gated']} | {g['gated_windows']} |")
    confusion = metrics["file"]["confusion"]
    lines += ["", "Confusion matrix, file level (rows true, columns predicted):", "",
              "| | " + " | ".join(confusion["classes"]) + " |", "|---|" + "---:|" * len(confusion["classes"])]
    for c, row in zip(confusion["classes"], confusion["matrix"]):
        lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    lines += [""] + [f"![{p}]({p})" for p in plots] + [""]
    return lines


def report_markdown(report: dict, plots: dict[str, list[str]]) -> str:
    lines = [f"# Training report: {report['name']}", "",
             f"Command: `{report['command']}`", "",
             f"Embedder `{report['embedder']}`, head model `{report['model']}`, classes {', '.join(report['classes'])}, "
             f"seed {report['seed']}.", "",
             "Metrics follow the monitor: the head scores only gated windows, a file's probabilities are the mean over "
             "its gated windows, and a file the gate never opens counts as not_cry.", ""]
    for tag in ("heldout", "cv"):
        if tag in report["metrics"]:
            lines += metrics_markdown(SET_TITLES[tag], report["metrics"][tag], plots.get(tag, []))
    for section in ("extra_markdown",):
        lines += report.get(section, [])
    return "\n".join(lines) + "\n"
