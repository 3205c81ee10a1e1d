"""Persistent preferences: decoding options, the model, the window and recent files.

A thin typed layer over QSettings so every key and its default lives in one place. The app
passes an INI file path for tests and benchmarks, so they never touch the user's settings.
"""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import QByteArray, QSettings

from captioner.backends import BACKENDS, PRECISIONS
from captioner.options import DecodeOptions
from captioner.registry import shipped_models

ORGANIZATION, APPLICATION = "captioner", "captioner-gui"
MAX_RECENT = 10
DEVICES = ("auto", "cpu", "cuda", "mps")
# What the model menus call the shipped models; one not listed here is offered by its name.
MODEL_LABELS = {
    "default": "Default (names everyday things)",
    "shapes": "Shapes (generated scenes)",
}


def shipped_model_labels() -> dict[str, str]:
    """The models shipped with captioner (captioner.registry), by name, with their labels."""
    return {name: MODEL_LABELS.get(name, name.capitalize()) for name in shipped_models()}


class Settings:
    def __init__(self, store: QSettings | None = None) -> None:
        self.store = store or QSettings(ORGANIZATION, APPLICATION)

    @classmethod
    def from_file(cls, path: str) -> Settings:
        return cls(QSettings(path, QSettings.Format.IniFormat))

    def _float(self, key: str, default: float) -> float:
        try:
            return float(self.store.value(key, default))
        except (TypeError, ValueError):
            return default

    def _bool(self, key: str, default: bool) -> bool:
        value = self.store.value(key, default)
        # INI files hand booleans back as the strings "true" / "false".
        return value.lower() == "true" if isinstance(value, str) else bool(value)

    @property
    def decode_options(self) -> DecodeOptions:
        stored = {
            field.name: self.store.value(f"decode/{field.name}")
            for field in dataclasses.fields(DecodeOptions)
            if self.store.contains(f"decode/{field.name}")
        }
        return DecodeOptions.clamped(**stored)

    @decode_options.setter
    def decode_options(self, options: DecodeOptions) -> None:
        for name, value in dataclasses.asdict(options).items():
            self.store.setValue(f"decode/{name}", value)

    @property
    def model(self) -> str:
        """A shipped model's name, a Hub model ("hf:OWNER/NAME[@REVISION]") or a model
        directory, kept absolute so that captioner.registry.is_model_name tells them apart;
        settings from before shipped names hold "" for default."""
        return str(self.store.value("model/directory", "") or "") or "default"

    @model.setter
    def model(self, name_or_directory: str) -> None:
        self.store.setValue("model/directory", name_or_directory)

    device = property(
        lambda self: self._choice("model/device", DEVICES),
        lambda self, name: self.store.setValue("model/device", name),
    )
    backend = property(
        lambda self: self._choice("model/backend", BACKENDS),
        lambda self, name: self.store.setValue("model/backend", name),
    )

    @property
    def precision(self) -> str:
        """float, int8 or auto (captioner.backends.PRECISIONS); float unless one was chosen."""
        value = str(self.store.value("model/precision", "float"))
        return value if value in PRECISIONS else "float"

    @precision.setter
    def precision(self, name: str) -> None:
        self.store.setValue("model/precision", name)

    def _choice(self, key: str, choices: tuple[str, ...]) -> str:
        """The stored choice, or "auto" (every choice's default) when it is not one of them."""
        value = str(self.store.value(key, "auto"))
        return value if value in choices else "auto"

    @property
    def opacity(self) -> float:
        return min(max(self._float("view/opacity", 0.6), 0.0), 1.0)

    @opacity.setter
    def opacity(self, value: float) -> None:
        self.store.setValue("view/opacity", value)

    @property
    def recursive(self) -> bool:
        """Whether opening or dropping a folder also takes photos from its subfolders."""
        return self._bool("files/recursive", True)

    @recursive.setter
    def recursive(self, value: bool) -> None:
        self.store.setValue("files/recursive", value)

    def _paths(self, key: str) -> list[str]:
        value = self.store.value(key, [])
        # One entry comes back as a plain string from INI files, none as None.
        items = [value] if isinstance(value, str) else list(value or [])
        return [str(item) for item in items if item]

    @property
    def recent(self) -> list[str]:
        return self._paths("files/recent")[:MAX_RECENT]

    def add_recent(self, path: str) -> None:
        self.store.setValue("files/recent", [path] + [p for p in self.recent if p != path])

    def clear_recent(self) -> None:
        self.store.setValue("files/recent", [])

    @property
    def reopen_last(self) -> bool:
        """Whether the app starts with the photos and folders open when it was last closed
        (when it is started with none named)."""
        return self._bool("files/reopen_last", True)

    @reopen_last.setter
    def reopen_last(self, value: bool) -> None:
        self.store.setValue("files/reopen_last", value)

    @property
    def last_opened(self) -> list[str]:
        """The photos and folders open when the app was last closed (as opened, absolute)."""
        return self._paths("files/last_opened")

    @last_opened.setter
    def last_opened(self, paths: list[str]) -> None:
        self.store.setValue("files/last_opened", list(paths))

    @property
    def grid_view(self) -> bool:
        """Whether the photo list shows a grid of thumbnails rather than one row per photo."""
        return self._bool("view/grid", False)

    @grid_view.setter
    def grid_view(self, value: bool) -> None:
        self.store.setValue("view/grid", value)

    @property
    def library_path(self) -> str:
        """The caption library file chosen in Settings; "" for the user's default one
        (captioner.library.default_library_path, shared with the batch command)."""
        return str(self.store.value("library/path", "") or "")

    @library_path.setter
    def library_path(self, path: str) -> None:
        self.store.setValue("library/path", path)

    @property
    def sidecars(self) -> bool:
        """Whether photo.txt beside each photo is kept in step with the person's caption."""
        return self._bool("library/sidecars", False)

    @sidecars.setter
    def sidecars(self, value: bool) -> None:
        self.store.setValue("library/sidecars", value)

    @property
    def first_run(self) -> bool:
        return not self._bool("app/started_before", False)

    def mark_started(self) -> None:
        self.store.setValue("app/started_before", True)

    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        return self.store.value("window/geometry"), self.store.value("window/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        self.store.setValue("window/geometry", geometry)
        self.store.setValue("window/state", state)

    def sync(self) -> None:
        self.store.sync()
