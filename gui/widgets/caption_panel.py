"""The caption: its words in large text, each one clickable, and the other beams with scores.

Hovering a word previews its attention heatmap, clicking pins it (clicking it again unpins),
Left/Right or Tab walk through the words from the keyboard. Nouns a copy model read off the
photo are underlined, so their heatmaps can be told apart: they show where the noun was read.
A right-click selects the word under it and opens the words' menu (the window adds "Teach: this
photo shows a ___", which starts from `word_to_teach`).
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QSizePolicy,
    QSlider,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from gui.widgets.elided_label import ElidedLabel

WORD_GAP_X, WORD_GAP_Y, WORD_PAD_X, WORD_PAD_Y = 6, 4, 7, 3
COPIED_COLOUR = QColor(13, 148, 136)  # the copy gate's colour in the gates panel


class CaptionWords(QWidget):
    """The caption's words laid out like wrapped text, each one a target for mouse and keys."""

    word_hovered = Signal(int)  # index, or -1 when the pointer leaves the words
    word_selected = Signal(int)  # index, or -1 when the selection is cleared
    edit_requested = Signal()  # a double-click: the person wants to write the caption

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._words: list[str] = []
        self._copied: list[bool] = []
        self._rects: list[QRect] = []
        self._selected = -1
        self._hovered = -1
        self._placeholder = ""
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.75)
        font.setWeight(QFont.Weight.DemiBold)
        self.setFont(font)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        policy = QSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        policy.setHeightForWidth(True)
        self.setSizePolicy(policy)
        self.setAccessibleName("Caption")

    @property
    def words(self) -> list[str]:
        return list(self._words)

    @property
    def selected(self) -> int:
        return self._selected

    @property
    def copied(self) -> list[bool]:
        """Per word: whether it is a noun copied from the photo (underlined)."""
        return list(self._copied)

    def set_words(
        self, words: list[str], placeholder: str = "", copied: list[bool] | None = None
    ) -> None:
        self._words = list(words)
        self._copied = list(copied) if copied is not None else [False] * len(words)
        self._selected = self._hovered = -1
        self._placeholder = placeholder
        nouns = [word for word, copy in zip(words, self._copied, strict=True) if copy]
        described = " ".join(words) + (f" (read off the photo: {', '.join(nouns)})" * bool(nouns))
        self.setAccessibleDescription(described or placeholder)
        self._layout_words()
        self.updateGeometry()
        self.update()

    def select(self, index: int) -> None:
        """Select word `index` (-1 for none) and announce it."""
        index = index if 0 <= index < len(self._words) else -1
        if index != self._selected:
            self._selected = index
            self.update()
            self.word_selected.emit(index)

    def word_rect(self, index: int) -> QRect:
        return QRect(self._rects[index])

    def word_to_teach(self) -> str:
        """The word a "Teach" starts from: the selected one, else the one under the pointer,
        else the first noun the model read off the photo (its name for the thing); "" if none."""
        for index in (self._selected, self._hovered):
            if 0 <= index < len(self._words):
                return self._words[index]
        return next((w for w, copy in zip(self._words, self._copied, strict=True) if copy), "")

    # Layout: words flow left to right and wrap, like text.

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        rects = self._flow(width)
        bottom = max((r.bottom() for r in rects), default=self._line_height())
        return bottom + WORD_GAP_Y + 1

    def sizeHint(self) -> QSize:
        return QSize(600, self.heightForWidth(max(self.width(), 300)))

    def minimumSizeHint(self) -> QSize:
        return QSize(200, self._line_height() + WORD_GAP_Y)

    def _line_height(self) -> int:
        return self.fontMetrics().height() + 2 * WORD_PAD_Y

    def _flow(self, width: int) -> list[QRect]:
        metrics = self.fontMetrics()
        rects, x, y = [], 0, WORD_GAP_Y
        line_height = self._line_height()
        for word in self._words:
            word_width = metrics.horizontalAdvance(word) + 2 * WORD_PAD_X
            if x > 0 and x + word_width > width:
                x, y = 0, y + line_height + WORD_GAP_Y
            rects.append(QRect(x, y, word_width, line_height))
            x += word_width + WORD_GAP_X
        return rects

    def _layout_words(self) -> None:
        self._rects = self._flow(max(self.width(), 1))

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self._layout_words()

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        palette = self.palette()
        if not self._words:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                self._placeholder,
            )  # fmt: skip
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        for i, (word, rect) in enumerate(zip(self._words, self._rects, strict=True)):
            text_role = QPalette.ColorRole.WindowText
            if i == self._selected:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(palette.color(QPalette.ColorRole.Highlight))
                painter.drawRoundedRect(QRectF(rect), 6, 6)
                text_role = QPalette.ColorRole.HighlightedText
            elif i == self._hovered:
                painter.setPen(palette.color(QPalette.ColorRole.Highlight))
                painter.setBrush(palette.color(QPalette.ColorRole.AlternateBase))
                painter.drawRoundedRect(QRectF(rect).adjusted(0.5, 0.5, -0.5, -0.5), 6, 6)
            painter.setPen(palette.color(text_role))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, word)
            if self._copied[i]:
                painter.setPen(QPen(COPIED_COLOUR, 2))
                baseline = rect.bottom() - WORD_PAD_Y / 2
                painter.drawLine(
                    QPointF(rect.left() + WORD_PAD_X, baseline),
                    QPointF(rect.right() - WORD_PAD_X, baseline),
                )
        if self.hasFocus() and self._selected < 0:
            # Show keyboard users where they are before a word is chosen.
            painter.setPen(palette.color(QPalette.ColorRole.Highlight))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRoundedRect(QRectF(self._rects[0]).adjusted(1, 1, -1, -1), 6, 6)

    # Mouse and keyboard.

    def _word_at(self, point: QPointF) -> int:
        for i, rect in enumerate(self._rects):
            if rect.contains(point.toPoint()):
                return i
        return -1

    def mouseMoveEvent(self, event) -> None:
        index = self._word_at(event.position())
        if index != self._hovered:
            self._hovered = index
            self.setCursor(
                Qt.CursorShape.PointingHandCursor if index >= 0 else Qt.CursorShape.ArrowCursor
            )
            self.update()
            self.word_hovered.emit(index)

    def leaveEvent(self, event: QEvent) -> None:
        if self._hovered >= 0:
            self._hovered = -1
            self.update()
            self.word_hovered.emit(-1)

    def mousePressEvent(self, event) -> None:
        index = self._word_at(event.position())
        if event.button() == Qt.MouseButton.LeftButton and index >= 0:
            self.select(-1 if index == self._selected else index)
        else:
            super().mousePressEvent(event)

    def contextMenuEvent(self, event) -> None:
        index = self._word_at(QPointF(event.pos()))
        if index >= 0:
            self.select(index)
        if self.actions():
            QMenu.exec(self.actions(), event.globalPos(), None, self)

    def mouseDoubleClickEvent(self, event) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.edit_requested.emit()
        else:
            super().mouseDoubleClickEvent(event)

    def keyPressEvent(self, event) -> None:
        key = event.key()
        if self._words and key in (Qt.Key.Key_Left, Qt.Key.Key_Right):
            self.step(1 if key == Qt.Key.Key_Right else -1)
        elif self._words and key == Qt.Key.Key_Home:
            self.select(0)
        elif self._words and key == Qt.Key.Key_End:
            self.select(len(self._words) - 1)
        else:
            super().keyPressEvent(event)  # Up/Down, Space, ... go on to the window

    def step(self, delta: int) -> None:
        """Move the selection by `delta` words, stopping at the ends."""
        if not self._words:
            return
        start = self._selected if self._selected >= 0 else (-1 if delta > 0 else len(self._words))
        self.select(min(max(start + delta, 0), len(self._words) - 1))

    def focusNextPrevChild(self, forward: bool) -> bool:
        # Tab walks through the words first, then leaves the caption like any other widget.
        target = self._selected + (1 if forward else -1)
        if self.hasFocus() and self._words and 0 <= target < len(self._words):
            self.select(target)
            return True
        return super().focusNextPrevChild(forward)

    def focusInEvent(self, event) -> None:
        super().focusInEvent(event)
        self.update()

    def focusOutEvent(self, event) -> None:
        super().focusOutEvent(event)
        self.update()


class CaptionEditor(QLineEdit):
    """The caption being written: Enter keeps it, Esc cancels; both keys are its own even
    where the window has a shortcut on them (Esc cancels "Caption all")."""

    committed = Signal(str)
    cancelled = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Edit caption")
        self.setPlaceholderText("Write the caption; Enter keeps it, Esc cancels")
        font = QFont(self.font())
        font.setPointSizeF(font.pointSizeF() * 1.5)
        self.setFont(font)
        self.setMaxLength(2000)  # captioner.library's limit on a caption

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in (
            Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter,
        ):  # fmt: skip
            event.accept()
            return True
        return super().event(event)

    def focusOutEvent(self, event) -> None:
        # Clicking another photo or panel keeps what was written; a menu or another window
        # taking the focus for a while does not end the editing.
        super().focusOutEvent(event)
        passing = (Qt.FocusReason.PopupFocusReason, Qt.FocusReason.ActiveWindowFocusReason)
        if self.isVisible() and event.reason() not in passing:
            self.committed.emit(self.text())

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.committed.emit(self.text())
        elif event.key() == Qt.Key.Key_Escape:
            self.cancelled.emit()
        else:
            super().keyPressEvent(event)


class CaptionPanel(QWidget):
    """Under the photo: the caption (or its editor), what the model said when the caption is
    the person's, its score, and the heatmap controls."""

    def __init__(self, play_action: QAction, grid_action: QAction, parent=None) -> None:
        super().__init__(parent)
        self.words = CaptionWords()
        self.editor = CaptionEditor()
        self.editor.hide()
        self.model_said = QLabel()  # for a person's caption: the model's words, to compare
        self.model_said.setWordWrap(True)
        self.model_said.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.model_said.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_said.hide()
        self.summary = ElidedLabel()  # a long timing line must not widen the window
        self.summary.setForegroundRole(QPalette.ColorRole.PlaceholderText)
        self.opacity = QSlider(Qt.Orientation.Horizontal)
        self.opacity.setRange(0, 100)
        self.opacity.setMinimumWidth(36)
        self.opacity.setMaximumWidth(140)
        self.opacity.setAccessibleName("Heatmap opacity")
        self.opacity.setToolTip("Heatmap opacity")
        opacity_label = QLabel("Heatmap &opacity")
        opacity_label.setBuddy(self.opacity)
        play, grid = QToolButton(), QToolButton()
        play.setDefaultAction(play_action)
        grid.setDefaultAction(grid_action)
        for button in (play, grid):
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)

        # The summary ("Beam 1 of 5 · score …") has a line of its own, the controls another:
        # side by side, a narrow window cut the one and the other's button texts.
        controls = QHBoxLayout()
        controls.addWidget(opacity_label)
        controls.addWidget(self.opacity, 1)
        controls.addStretch(0)
        controls.addWidget(play)
        controls.addWidget(grid)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        layout.addWidget(self.words)
        layout.addWidget(self.editor)
        layout.addWidget(self.model_said)
        layout.addWidget(self.summary)
        layout.addLayout(controls)

    def show_model_said(self, text: str) -> None:
        """Under a person's caption, the model's words for it ("" hides the line)."""
        self.model_said.setText(f"model said: {text}" if text else "")
        self.model_said.setVisible(bool(text))


class BeamList(QTreeWidget):
    """Every beam's caption with its score, best first; choosing one shows that caption."""

    beam_chosen = Signal(int)  # shown (a click, the arrow keys)
    beam_taken = Signal(int)  # taken as the photo's caption (a double-click, Enter)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setColumnCount(3)
        self.setHeaderLabels(["#", "Caption", "Score"])
        self.setRootIsDecorated(False)
        self.setUniformRowHeights(True)
        self.setWordWrap(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        header = self.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.setAccessibleName("Alternative captions")
        self.currentItemChanged.connect(self._on_current_changed)
        self.itemDoubleClicked.connect(
            lambda item, _column: self.beam_taken.emit(self.indexOfTopLevelItem(item))
        )
        self.setToolTip("Double-click or Enter takes a caption as the photo's (Ctrl+1…9)")

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter) and self.currentItem():
            self.beam_taken.emit(self.indexOfTopLevelItem(self.currentItem()))
        else:
            super().keyPressEvent(event)

    def sizeHint(self) -> QSize:
        return QSize(360, 150)

    def set_beams(self, beams: list[tuple[str, float]], chosen: int = 0) -> None:
        self.blockSignals(True)
        self.clear()
        for rank, (text, score) in enumerate(beams, 1):
            item = QTreeWidgetItem([str(rank), text, format_score(score)])
            item.setToolTip(1, text)
            item.setTextAlignment(2, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            self.addTopLevelItem(item)
        if beams:
            self.setCurrentItem(self.topLevelItem(chosen))
        self.blockSignals(False)

    def _on_current_changed(self, current: QTreeWidgetItem | None, _previous) -> None:
        if current is not None:
            self.beam_chosen.emit(self.indexOfTopLevelItem(current))


def format_score(score: float) -> str:
    """A beam's score, readable at any size: a length penalty divides log-probabilities
    towards 0, where two decimals would show every beam as -0.00."""
    return f"{score:.2f}" if abs(score) >= 1 else f"{score:.3g}"
