"""The shown caption's heatmaps on the photo: one word's at a time, or played in turn.

A copied noun shows where it was read, any other word the attention before it was chosen
(captioner/pointing.py); the viewer's label says which.

Hovering a word shows its heatmap while the pointer stays; clicking pins it. Heatmaps are
blended at the size the viewer draws them and kept until the photo, the caption, the opacity or
the viewer's size changes.
"""

from __future__ import annotations

from PIL import Image
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QAction, QImage
from PySide6.QtWidgets import QSlider

from captioner.pointing import map_label
from gui.convert import pil_to_qimage
from gui.session import Session
from gui.settings import Settings
from gui.widgets.caption_panel import CaptionWords
from gui.widgets.viewer import ImageViewer

PLAY_INTERVAL_MS = 700
RESIZE_SETTLE_MS = 120  # re-blend once the viewer has stopped changing size
GRID_COLUMNS = 5
GRID_CELL = 224


class WordHeatmaps(QObject):
    overlay_shown = Signal(int)  # word index whose heatmap the viewer now draws

    def __init__(
        self,
        session: Session,
        settings: Settings,
        viewer: ImageViewer,
        words: CaptionWords,
        opacity: QSlider,
        play_action: QAction,
    ) -> None:
        """opacity: the slider (percent) the heatmaps are blended with; play_action: the
        checkable action that starts and stops playback, kept in step with it."""
        super().__init__(viewer)
        self.session = session
        self.settings = settings
        self.viewer = viewer
        self.words = words
        self.opacity = opacity
        self.play_action = play_action
        self.pinned_word = -1
        self.hovered_word = -1
        self._base: Image.Image | None = None  # the photo at the size it is drawn
        self._overlays: dict[int, QImage] = {}  # word -> heatmap at _base's size
        words.word_hovered.connect(self._on_word_hovered)
        words.word_selected.connect(self._on_word_selected)
        opacity.setValue(round(settings.opacity * 100))
        opacity.valueChanged.connect(self._on_opacity_changed)
        self._play_timer = QTimer(self, interval=PLAY_INTERVAL_MS)
        self._play_timer.timeout.connect(self._play_step)
        self._resize_timer = QTimer(self, singleShot=True, interval=RESIZE_SETTLE_MS)
        self._resize_timer.timeout.connect(self.refresh)
        viewer.resized.connect(self._resize_timer.start)

    def reset(self) -> None:
        """A new caption: no word shown, nothing blended."""
        self.pinned_word = self.hovered_word = -1
        self._overlays.clear()
        self._base = None
        self.viewer.set_overlay(None)

    def photo_sharpened(self) -> None:
        """The viewer now draws the full-quality photo: blend the heatmaps onto it from now on."""
        self._base = None

    def refresh(self) -> None:
        """Redraw the word shown, if any (after a resize, a new photo copy or opacity)."""
        shown = self.hovered_word if self.hovered_word >= 0 else self.pinned_word
        if self.viewer.overlay is not None or shown >= 0:
            self.show_word(shown)

    def _on_word_hovered(self, index: int) -> None:
        self.hovered_word = index
        self.show_word(index if index >= 0 else self.pinned_word)

    def _on_word_selected(self, index: int) -> None:
        self.pinned_word = index
        self.show_word(index)

    def _on_opacity_changed(self, value: int) -> None:
        self.settings.opacity = value / 100
        self._overlays.clear()
        self.refresh()

    def show_word(self, index: int) -> None:
        """Blend word `index`'s map over the photo (-1: the plain photo), labelled with which
        map it is: where a copied noun was read, or the attention before another word."""
        caption = self.session.current
        display = self.session.display_for(self.session.current_path)
        if caption is None or display is None or not 0 <= index < len(caption.tokens):
            self.viewer.set_overlay(None)
            return
        size = self.viewer.overlay_size()
        target = (max(size.width(), 1), max(size.height(), 1))
        if self._base is None or self._base.size != target:
            # Heatmaps are blended at the size they are drawn, never at full resolution.
            self._base = display[0].resize(target, Image.Resampling.BILINEAR)
            self._overlays.clear()
        if index not in self._overlays:
            from captioner.photos.heatmap import overlay

            blended = overlay(self._base, caption.maps[index], self.opacity.value() / 100)
            self._overlays[index] = pil_to_qimage(blended)
        label = map_label(caption.tokens[index], caption.map_kinds[index])
        self.viewer.set_overlay(self._overlays[index], label)
        self.overlay_shown.emit(index)

    def grid(self) -> Image.Image | None:
        """The photo and every word's heatmap in a grid; None without a caption."""
        caption = self.session.current
        display = self.session.display_for(self.session.current_path)
        if caption is None or display is None or not caption.tokens:
            return None
        from captioner.photos.heatmap import attention_grid

        return attention_grid(
            display[0], caption.tokens, caption.maps, columns=GRID_COLUMNS,
            cell_size=GRID_CELL, opacity=self.opacity.value() / 100, kinds=caption.map_kinds,
        )  # fmt: skip

    # Playback: the words' heatmaps in turn.

    def toggle_play(self) -> None:
        if self._play_timer.isActive():
            self.stop_play()
        elif self.session.current is not None and self.session.current.tokens:
            self.play_action.setChecked(True)
            self.play_action.setText("Stop")
            self.words.select(0)
            self._play_timer.start()
        else:
            self.play_action.setChecked(False)

    def _play_step(self) -> None:
        following = self.words.selected + 1
        if self.session.current is None or following >= len(self.session.current.tokens):
            self.stop_play()
        else:
            self.words.select(following)

    def stop_play(self) -> None:
        self._play_timer.stop()
        self.play_action.setChecked(False)
        self.play_action.setText("Play words")
