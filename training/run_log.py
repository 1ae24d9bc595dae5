"""A training run's records: the CSV log and the loss / validation-F1 figure."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence


class CsvLog:
    """Append-only CSV log with a fixed header."""

    COLUMNS = ("stage", "epoch", "step", "lr", "loss", "cls", "reg", "emo", "act", "act_emo",
               "act_since", "val_f1", "val_micro_f1", "val_macro_f1", "val_thresh", "seconds")

    def __init__(self, path: Path, resume: bool) -> None:
        self.path = path
        if not (resume and path.is_file()):
            with open(path, "w", newline="") as f:
                csv.writer(f).writerow(self.COLUMNS)

    def write(self, **row: Any) -> None:
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([row.get(c, "") for c in self.COLUMNS])


def plot_curves(history: Sequence[dict], path: Path) -> None:
    """Loss (both stages) and validation F1 per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    a = [h for h in history if h["stage"] == "A"]
    b = [h for h in history if h["stage"] in ("B", "C")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    if a:
        axes[0].plot([h["step"] for h in a], [h["loss"] for h in a])
    axes[0].set(title="stage A: encoder loss", xlabel="step")
    if b:
        axes[1].plot([h["epoch"] for h in b], [h["loss"] for h in b], marker="o")
        for key in ("val_f1", "val_micro_f1", "val_macro_f1"):
            axes[2].plot([h["epoch"] for h in b], [h[key] for h in b], marker="o",
                         label=key.replace("val_", ""))
        axes[2].legend()
        c = [h for h in b if h["stage"] == "C"]
        if c:  # where end-to-end training starts
            for ax in axes[1:]:
                ax.axvline(c[0]["epoch"] - 0.5, color="grey", ls=":")
    axes[1].set(title="stages B | C: joint loss", xlabel="epoch")
    axes[2].set(title="validation spotting F1", xlabel="epoch", ylim=(0, 1))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def history_from_log(path: str | Path) -> list[dict]:
    """Rows of a run's ``log.csv`` as the history :func:`plot_curves` draws."""
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (r[k] if k == "stage" else float(r[k]) if r[k] else None)
                         for k in r})
    return rows
