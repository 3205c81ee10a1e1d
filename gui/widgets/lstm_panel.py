"""Inside the LSTM: what the decoder's gates did at each word of the caption.

Per word the chart shows each gate's mean activation over the decoder's units with a whisker
of one standard deviation, the cell state's size (its RMS, relative to the largest in the
caption) and the attention gate beta, which scales how much of the photo enters the cell.
A low forget gate is where the cell lets go of what it held: a reset. For a model that copies
nouns, the copy gate is the share of the word's probability that goes to nouns read off the
photo where the attention looks (so a copied noun's heatmap is where it was read).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFontMetricsF, QPainter, QPalette, QPen, QPolygonF, QTransform
from PySide6.QtWidgets import QLabel, QSizePolicy, QVBoxLayout, QWidget

# Mid-tone colours that read on both light and dark backgrounds.
SERIES_COLOURS = {
    "input": QColor(59, 130, 246),
    "forget": QColor(234, 108, 12),
    "output": QColor(22, 163, 74),
    "reset": QColor(234, 108, 12),
    "update": QColor(59, 130, 246),
    "cell": QColor(168, 85, 247),
    "attention gate": QColor(219, 39, 119),
    "copy gate": QColor(13, 148, 136),
}
GATE_NAMES = {"lstm": ("input", "forget", "output"), "gru": ("reset", "update"), "rnn": ()}


def panel_title(cell: str | None) -> str:
    """The panel's title: after the loaded model's cell ("Inside the GRU"), neutral while no
    model is loaded."""
    return f"Inside the {cell.upper()}" if cell else "Inside the decoder"


LABEL_ANGLE = -45.0  # degrees: word labels turn diagonal when they do not fit level
LABEL_MAX_WIDTH = 70.0  # longer words are elided on the diagonal
LABEL_GAP = 2.0  # pixels kept clear around every label


@dataclass(frozen=True)
class WordLabel:
    """One word's label under the chart: its text centred at the top of `rect`, transformed."""

    index: int
    text: str
    rect: QRectF  # in the label's own coordinates, with LABEL_GAP around the text
    transform: QTransform  # from the label's coordinates to the chart's

    def outline(self) -> QPolygonF:
        """The area the label keeps to itself, in the chart's coordinates."""
        return self.transform.map(QPolygonF(self.rect))


def layout_word_labels(
    tokens: list[str], centres: list[float], top: float, metrics: QFontMetricsF
) -> list[WordLabel]:
    """Every word's label, hanging below `top` at its slot's centre: level when they all fit,
    else diagonal (ending at the slot, running down to the left)."""

    def label(i: int, angle: float) -> WordLabel:
        text = tokens[i] if angle == 0 else metrics.elidedText(
            tokens[i], Qt.TextElideMode.ElideRight, LABEL_MAX_WIDTH
        )  # fmt: skip
        width = metrics.horizontalAdvance(text)
        left = -width / 2 if angle == 0 else -width
        rect = QRectF(left - LABEL_GAP, 0, width + 2 * LABEL_GAP, metrics.height() + LABEL_GAP)
        transform = QTransform.fromTranslate(centres[i], top + 4).rotate(angle)
        return WordLabel(i, text, rect, transform)

    level = [label(i, 0.0) for i in range(len(tokens))]
    if not _any_overlap(level, 1):
        return level
    return [label(i, LABEL_ANGLE) for i in range(len(tokens))]


def thin_labels(labels: list[WordLabel], selected: int) -> list[WordLabel]:
    """Every k-th label, for the smallest k at which none overlap; counted from the selected
    word, so that it always keeps its label."""
    step = 1
    while step < len(labels) and _any_overlap(labels, step):
        step += 1
    first = labels[selected].index % step if 0 <= selected < len(labels) else 0
    return labels[first::step]


def _any_overlap(labels: list[WordLabel], step: int) -> bool:
    # Labels are alike and evenly spaced, so if no label overlaps the one `step` further on,
    # none overlaps any further one either.
    return any(
        a.outline().intersects(b.outline()) for a, b in zip(labels, labels[step:], strict=False)
    )


class GateChart(QWidget):
    word_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.tokens: list[str] = []
        self.series: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # name -> mean, std
        self.selected = -1
        self.setMinimumSize(220, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def sizeHint(self) -> QSize:
        return QSize(380, 380)

    def set_data(self, tokens: list[str], series: dict) -> None:
        self.tokens, self.series, self.selected = tokens, series, -1
        self.update()

    def set_selected(self, index: int) -> None:
        self.selected = index
        self.update()

    def _plot_rect(self) -> QRectF:
        metrics = self.fontMetrics()
        legend_rows = 2 if self.width() < 420 else 1
        top = 6 + legend_rows * (metrics.height() + 4) + 4
        left = metrics.horizontalAdvance("1.0") + 10
        width = self.width() - left - 8
        # Room below for the deepest label, whichever words end up labelled.
        labels = self._labels(left, width, 0.0)
        depth = max((label.outline().boundingRect().bottom() for label in labels), default=0.0)
        return QRectF(left, top, width, self.height() - top - depth - 4)

    def _labels(self, left: float, width: float, top: float) -> list[WordLabel]:
        centres = [left + (i + 0.5) * width / len(self.tokens) for i in range(len(self.tokens))]
        return layout_word_labels(self.tokens, centres, top, QFontMetricsF(self.font()))

    def word_labels(self) -> list[WordLabel]:
        """The labels drawn under the chart: words are left unlabelled rather than overlap."""
        plot = self._plot_rect()
        return thin_labels(self._labels(plot.left(), plot.width(), plot.bottom()), self.selected)

    def _slot_x(self, plot: QRectF, i: int) -> float:
        return plot.left() + (i + 0.5) * plot.width() / len(self.tokens)

    def mousePressEvent(self, event) -> None:
        plot = self._plot_rect()
        if self.tokens and plot.left() <= event.position().x() <= plot.right():
            i = int((event.position().x() - plot.left()) / plot.width() * len(self.tokens))
            self.word_clicked.emit(min(max(i, 0), len(self.tokens) - 1))

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.WindowText)
        grid = palette.color(QPalette.ColorRole.Mid)
        if not self.tokens:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(
                self.rect().adjusted(8, 8, -8, -8),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                "Caption a photo to see the decoder's gates word by word.",
            )
            return
        plot = self._plot_rect()
        self._draw_legend(painter, text)

        slot = plot.width() / len(self.tokens)
        if 0 <= self.selected < len(self.tokens):
            band = QColor(palette.color(QPalette.ColorRole.Highlight))
            band.setAlpha(70)
            painter.fillRect(
                QRectF(plot.left() + self.selected * slot, plot.top(), slot, plot.height()), band
            )
        painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))
        for level in (0.0, 0.5, 1.0):
            y = plot.bottom() - level * plot.height()
            painter.drawLine(QPointF(plot.left(), y), QPointF(plot.right(), y))
            painter.setPen(text)
            painter.drawText(
                QRectF(0, y - 8, plot.left() - 4, 16),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{level:.1f}",
            )
            painter.setPen(QPen(grid, 1, Qt.PenStyle.DotLine))

        # Series sit side by side within a word's slot, so their spread whiskers never overlap.
        names = list(self.series)
        spacing = min(6.0, slot / (len(names) + 1))
        for k, name in enumerate(names):
            mean, std = self.series[name]
            offset = (k - (len(names) - 1) / 2) * spacing
            colour = SERIES_COLOURS[name]
            if std is not None:
                self._draw_whiskers(painter, plot, mean, std, colour, offset)
            style = Qt.PenStyle.DashLine if name == "cell" else Qt.PenStyle.SolidLine
            self._draw_line(painter, plot, mean, colour, style, offset)

        self._draw_labels(painter, text)

    def _point(self, plot: QRectF, i: int, value: float, offset: float = 0.0) -> QPointF:
        value = min(max(float(value), 0.0), 1.0)
        return QPointF(self._slot_x(plot, i) + offset, plot.bottom() - value * plot.height())

    def _draw_whiskers(self, painter, plot, mean, std, colour: QColor, offset: float) -> None:
        """mean ± one standard deviation over the units, as bars; the selected word's stand out."""
        for i, (m, s) in enumerate(zip(mean, std, strict=True)):
            faded = QColor(colour)
            faded.setAlpha(255 if i == self.selected else 80)
            painter.setPen(QPen(faded, 2.0 if i == self.selected else 1.2))
            top, bottom = self._point(plot, i, m + s, offset), self._point(plot, i, m - s, offset)
            painter.drawLine(top, bottom)
            for end in (top, bottom):
                painter.drawLine(QPointF(end.x() - 2, end.y()), QPointF(end.x() + 2, end.y()))

    def _draw_line(self, painter, plot, values, colour: QColor, style, offset: float) -> None:
        points = [self._point(plot, i, v, offset) for i, v in enumerate(values)]
        painter.setPen(QPen(colour, 2, style))
        painter.drawPolyline(points)
        painter.setBrush(colour)
        painter.setPen(Qt.PenStyle.NoPen)
        for point in points:
            painter.drawEllipse(point, 3, 3)

    def _draw_legend(self, painter: QPainter, text: QColor) -> None:
        metrics = painter.fontMetrics()
        x, y = 8.0, 6.0
        for name in self.series:
            label = "cell state size" if name == "cell" else name
            width = 18 + metrics.horizontalAdvance(label) + 14
            if x + width > self.width() - 4 and x > 8:
                x, y = 8.0, y + metrics.height() + 4
            middle = y + metrics.height() / 2
            painter.setPen(QPen(SERIES_COLOURS[name], 3))
            painter.drawLine(QPointF(x, middle), QPointF(x + 14, middle))
            painter.setPen(text)
            painter.drawText(QPointF(x + 18, y + metrics.ascent()), label)
            x += width

    def _draw_labels(self, painter: QPainter, text: QColor) -> None:
        painter.setPen(text)
        for label in self.word_labels():
            font = painter.font()
            font.setBold(label.index == self.selected)
            painter.setFont(font)
            painter.save()
            painter.setTransform(label.transform, combine=True)
            painter.drawText(
                label.rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, label.text
            )
            painter.restore()


class LstmPanel(QWidget):
    word_clicked = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.chart = GateChart()
        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setTextFormat(Qt.TextFormat.RichText)
        self.details.setMinimumHeight(self.fontMetrics().lineSpacing() * 3)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(self.chart, 1)
        layout.addWidget(self.details)
        self.chart.word_clicked.connect(self.word_clicked)
        self._cell = "lstm"
        self._stats: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self._cell_rms = np.zeros(0)
        self.clear()

    def clear(self) -> None:
        self._stats, self._cell_rms = {}, np.zeros(0)
        self.chart.set_data([], {})
        self.details.setText("")

    def set_caption(
        self,
        tokens: list[str],
        gates: dict[str, np.ndarray],
        context_gate: np.ndarray,
        cell_type: str,
        copy_gate: np.ndarray | None = None,
    ) -> None:
        """gates: name -> (len(tokens), decoder_dim) activations; context_gate and copy_gate
        (copy models only): (len(tokens),)."""
        self._cell = cell_type
        stats: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        for name in GATE_NAMES.get(cell_type, ()):
            if name in gates and len(gates[name]):
                stats[name] = (gates[name].mean(axis=1), gates[name].std(axis=1))
        self._cell_rms = np.zeros(0)
        if "cell" in gates and len(gates["cell"]):
            self._cell_rms = np.sqrt((gates["cell"].astype(np.float64) ** 2).mean(axis=1))
            peak = self._cell_rms.max()
            stats["cell"] = (self._cell_rms / peak if peak > 0 else self._cell_rms, None)
        stats["attention gate"] = (np.asarray(context_gate, dtype=np.float64), None)
        if copy_gate is not None:
            stats["copy gate"] = (np.asarray(copy_gate, dtype=np.float64), None)
        self._stats = stats
        self.chart.set_data(list(tokens), stats)
        self.set_selected(-1)

    def selected_values(self) -> dict[str, float]:
        """The selected word's mean gate values (and cell RMS, attention gate); tests read it."""
        i = self.chart.selected
        if i < 0:
            return {}
        values = {name: float(mean[i]) for name, (mean, _) in self._stats.items()}
        if len(self._cell_rms):
            values["cell"] = float(self._cell_rms[i])
        return values

    def set_selected(self, index: int) -> None:
        self.chart.set_selected(index)
        tokens = self.chart.tokens
        if not tokens:
            return
        if self._cell == "rnn":
            note = "This decoder is a plain RNN: it has no gates, only the attention gate."
        else:
            note = "Click a word (here or in the caption) to see its gate values."
        if not 0 <= index < len(tokens):
            self.details.setText(f"<span>{note}</span>")
            return
        parts = []
        for name, (mean, std) in self._stats.items():
            if name == "cell":
                parts.append(f"cell state size {self._cell_rms[index]:.2f} (RMS)")
            elif std is not None:
                parts.append(f"{name} {mean[index]:.2f} ± {std[index]:.2f}")
            else:
                parts.append(f"{name} {mean[index]:.2f}")
        self.details.setText(
            f"<b>“{_escape(tokens[index])}”</b>: {' · '.join(parts)}<br>{self._reading(index)}"
        )

    def _reading(self, index: int) -> str:
        """One plain sentence on what the gates mean at this word."""
        sentences = []
        if "forget" in self._stats:
            forget = self._stats["forget"][0][index]
            if forget < 0.4:
                sentences.append("The cell <b>resets</b> here: it lets go of most of what it held.")
            elif forget > 0.6:
                sentences.append("The cell <b>remembers</b>: it keeps most of what it held.")
            else:
                sentences.append("The cell keeps about half of what it held.")
        elif "update" in self._stats:
            update = self._stats["update"][0][index]
            keeps = "keeps its state" if update > 0.5 else "rewrites its state"
            sentences.append(f"The GRU mostly {keeps} here.")
        beta = self._stats["attention gate"][0][index]
        source = "the photo" if beta >= 0.5 else "the words so far"
        sentences.append(f"It leans on {source} (attention gate {beta:.2f}).")
        if "copy gate" in self._stats:
            copy = self._stats["copy gate"][0][index]
            if copy > 0.5:
                sentences.append(
                    f"The <b>copy path</b> leads (copy gate {copy:.2f}): most of the word's "
                    "probability is on nouns read off the photo where it looks."
                )
            else:
                sentences.append(f"Its own vocabulary leads (copy gate {copy:.2f}).")
        return " ".join(sentences)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
