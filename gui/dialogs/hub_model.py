"""The question for a Hugging Face Hub model's name (Settings → Hugging Face Hub model…)."""

from __future__ import annotations

from PySide6.QtWidgets import QInputDialog, QWidget

from captioner.registry import HUB_PREFIX, is_hub_model


def ask_hub_model(parent: QWidget, current: str) -> str | None:
    """The Hub model the user names ("hf:OWNER/NAME[@REVISION]"; the prefix is added when left
    out), starting from `current` if it is one; None if cancelled or left empty."""
    name, accepted = QInputDialog.getText(
        parent,
        "Open a Hugging Face Hub model",
        "Model: hf:OWNER/NAME, or hf:OWNER/NAME@REVISION for a branch, tag or commit",
        text=current if is_hub_model(current) else HUB_PREFIX,
    )
    name = name.strip()
    if not accepted or name in ("", HUB_PREFIX):
        return None
    return name if is_hub_model(name) else HUB_PREFIX + name
