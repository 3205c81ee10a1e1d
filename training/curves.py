"""curves.png: a run's learning curves, drawn from its log.jsonl."""

from __future__ import annotations

import json
from pathlib import Path

from captioner.photos.atomic import save_atomically


def plot_curves(run_dir: Path) -> None:
    """curves.png: losses and the validation metrics per epoch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line]
    epochs = [r["epoch"] for r in rows]
    figure, (losses, scores) = plt.subplots(1, 2, figsize=(10, 4))
    for key in ("train_loss", "val_loss"):
        if any(key in r for r in rows):
            losses.plot(epochs, [r.get(key) for r in rows], marker="o", label=key)
    for key in ("Bleu_4", "CIDEr", "ROUGE_L"):
        if any(key in r for r in rows):
            scores.plot(epochs, [r.get(key) for r in rows], marker="o", label=key)
    for axes, title in ((losses, "cross-entropy per word"), (scores, "validation metrics")):
        axes.set_xlabel("epoch")
        axes.set_title(title)
        axes.grid(alpha=0.3)
        if axes.lines:
            axes.legend()
    figure.tight_layout()
    save_atomically(run_dir / "curves.png", lambda file: figure.savefig(file, format="png", dpi=80))
    plt.close(figure)
