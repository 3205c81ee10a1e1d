"""The image list: a thumbnail, the file name and its caption (or error) per row, or, in grid
mode (View → Photos as a Grid), larger thumbnails in a grid with the file name below each.

A small badge on the thumbnail marks the state: a green tick for captioned, a red bang for a
photo that failed, an amber dot while it is being captioned. Text colours come from the
palette, so the list reads the same in light and dark themes. Both modes are the one view
(a QListView in list or icon mode): the same model, selection, hidden rows and keys.
"""

from __future__ import annotations

from PySide6.QtCore import (
    QItemSelection,
    QItemSelectionModel,
    QModelIndex,
    QPersistentModelIndex,
    QPointF,
    QRect,
    QSize,
    Qt,
)
from PySide6.QtGui import QColor, QFont, QFontMetrics, QIcon, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QListView,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
)

from gui.models.image_list import (
    CaptionRole,
    CaptionStateRole,
    DiskStateRole,
    ErrorRole,
    Status,
    StatusRole,
)

THUMB = 64  # logical pixels
GRID_THUMB = 96  # in grid mode; gui/thumbnails.py decodes 128 device pixels
PADDING = 6
GRID_SPACING = 4
# The caption's marker, right of the file name: who wrote it, and whether it was checked.
STATE_MARKERS = {
    "model": ("model", QColor(128, 128, 128)),
    "accepted": ("✓ checked", QColor(37, 99, 235)),
    "mine": ("✎ mine", QColor(147, 51, 234)),
}
# The grid has room for a symbol only; the tooltip says it in words ("model" needs none there).
GRID_STATE_MARKERS = {
    "accepted": ("✓", STATE_MARKERS["accepted"][1]),
    "mine": ("✎", STATE_MARKERS["mine"][1]),
}
# A photo gone or changed on disk since it was captioned: a marker left of the caption's.
DISK_MARKERS = {
    "missing": ("missing", QColor(218, 54, 51)),
    "changed": ("changed", QColor(219, 150, 20)),
}
STATUS_COLOURS = {
    Status.CAPTIONED: QColor(46, 160, 67),
    Status.FAILED: QColor(218, 54, 51),
    Status.WORKING: QColor(219, 150, 20),
}


class ImageItemDelegate(QStyledItemDelegate):
    grid = False  # a grid cell (thumbnail above the name) rather than a row

    def sizeHint(self, option: QStyleOptionViewItem, index) -> QSize:
        if self.grid:
            name_height = QFontMetrics(option.font).height()
            return QSize(GRID_THUMB + 2 * PADDING, GRID_THUMB + name_height + 3 * PADDING)
        return QSize(THUMB + 2 * PADDING, THUMB + 2 * PADDING)

    def paint(
        self,
        painter: QPainter,
        option: QStyleOptionViewItem,
        index: QModelIndex | QPersistentModelIndex,
    ) -> None:
        painter.save()
        style = option.widget.style() if option.widget else None
        if style is not None:
            # Selection and hover backgrounds as the platform style draws them.
            background = QStyleOptionViewItem(option)
            self.initStyleOption(background, index)
            background.text = ""
            background.icon = QIcon()
            background.showDecorationSelected = True  # icon mode would mark only the text
            style.drawPrimitive(
                QStyle.PrimitiveElement.PE_PanelItemViewItem, background, painter, option.widget
            )
        if self.grid:
            self._paint_cell(painter, option, index)
        else:
            self._paint_row(painter, option, index)
        painter.restore()

    def _paint_cell(self, painter: QPainter, option, index) -> None:
        """Grid mode: the thumbnail with its badge, the markers on its top edge, the file name
        below (the tooltip has the caption)."""
        rect = option.rect
        thumb_rect = QRect(
            rect.left() + (rect.width() - GRID_THUMB) // 2, rect.top() + PADDING,
            GRID_THUMB, GRID_THUMB,
        )  # fmt: skip
        self._paint_thumbnail(
            painter, option, thumb_rect, index.data(Qt.ItemDataRole.DecorationRole)
        )
        self._paint_badge(painter, thumb_rect, index.data(StatusRole))
        marker_line = QRect(thumb_rect.left() + 2, thumb_rect.top() + 2, GRID_THUMB - 4, 0)
        marker_line.setHeight(QFontMetrics(option.font).height())
        for marker in (
            GRID_STATE_MARKERS.get(index.data(CaptionStateRole) or ""),
            DISK_MARKERS.get(index.data(DiskStateRole) or ""),
        ):
            width = self._paint_marker(painter, option, marker_line, marker, filled=True)
            marker_line.setRight(marker_line.right() - width)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        painter.setFont(option.font)
        painter.setPen(option.palette.color(QPalette.ColorGroup.Active, text_role))
        name_rect = QRect(
            rect.left() + 2, thumb_rect.bottom() + PADDING, rect.width() - 4,
            painter.fontMetrics().height(),
        )  # fmt: skip
        name = painter.fontMetrics().elidedText(
            index.data(Qt.ItemDataRole.DisplayRole), Qt.TextElideMode.ElideMiddle,
            name_rect.width(),
        )  # fmt: skip
        painter.drawText(name_rect, Qt.AlignmentFlag.AlignHCenter, name)

    def _paint_row(self, painter: QPainter, option, index) -> None:
        rect = option.rect
        thumb_rect = QRect(rect.left() + PADDING, rect.top() + PADDING, THUMB, THUMB)
        self._paint_thumbnail(
            painter, option, thumb_rect, index.data(Qt.ItemDataRole.DecorationRole)
        )
        self._paint_badge(painter, thumb_rect, index.data(StatusRole))

        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        group = QPalette.ColorGroup.Active
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        text_colour = option.palette.color(group, text_role)
        text_left = thumb_rect.right() + PADDING + 4
        text_width = rect.right() - text_left - PADDING
        name_font = QFont(option.font)
        name_font.setBold(True)
        painter.setFont(name_font)
        painter.setPen(text_colour)
        name_height = painter.fontMetrics().height()
        for marker in (
            STATE_MARKERS.get(index.data(CaptionStateRole) or ""),
            DISK_MARKERS.get(index.data(DiskStateRole) or ""),
        ):
            text_width -= self._paint_marker(
                painter, option,
                QRect(text_left, rect.top() + PADDING + 2, text_width, name_height), marker,
            )  # fmt: skip
        painter.setFont(name_font)
        painter.setPen(text_colour)
        name = painter.fontMetrics().elidedText(
            index.data(Qt.ItemDataRole.DisplayRole), Qt.TextElideMode.ElideMiddle, text_width
        )
        top = rect.top() + PADDING + 2
        painter.drawText(QRect(text_left, top, text_width, name_height), 0, name)

        status = index.data(StatusRole)
        detail = index.data(ErrorRole) if status is Status.FAILED else index.data(CaptionRole)
        if status is Status.WORKING and not detail:
            detail = "captioning…"
        painter.setFont(option.font)
        if status is Status.FAILED and not selected:
            painter.setPen(STATUS_COLOURS[Status.FAILED])
        elif status is not Status.CAPTIONED and not selected:
            painter.setPen(option.palette.color(QPalette.ColorRole.PlaceholderText))
        metrics = painter.fontMetrics()
        line_top = top + name_height + 2
        max_lines = max(1, (rect.bottom() - line_top - 2) // metrics.lineSpacing())
        for line in elided_lines(detail or "", metrics, text_width, max_lines):
            painter.drawText(QRect(text_left, line_top, text_width, metrics.height()), 0, line)
            line_top += metrics.lineSpacing()

    def _paint_marker(
        self, painter: QPainter, option, line: QRect, marker, *, filled: bool = False
    ) -> int:
        """A marker (text, colour) at the right end of `line` (the name's, or in the grid the
        thumbnail's top edge, on a `filled` pill); returns its width."""
        if marker is None:
            return 0
        text, colour = marker
        if option.state & QStyle.StateFlag.State_Selected and not filled:  # on the selection
            colour = option.palette.color(
                QPalette.ColorGroup.Active, QPalette.ColorRole.HighlightedText
            )
        font = QFont(option.font)
        font.setPointSizeF(font.pointSizeF() * 0.85)
        painter.setFont(font)
        metrics = painter.fontMetrics()
        width = metrics.horizontalAdvance(text) + 10
        pill = QRect(line.right() - width, line.top(), width, line.height())
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(colour, 1))
        painter.setBrush(
            option.palette.color(QPalette.ColorRole.Base) if filled else Qt.BrushStyle.NoBrush
        )
        painter.drawRoundedRect(pill.adjusted(0, 1, 0, -1), 6, 6)
        painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, text)
        return width + 4

    def _paint_thumbnail(self, painter, option, rect: QRect, pixmap: QPixmap | None) -> None:
        painter.fillRect(rect, option.palette.color(QPalette.ColorRole.AlternateBase))
        if pixmap is None or pixmap.isNull():
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        size = pixmap.size().scaled(rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
        target = QRect(0, 0, size.width(), size.height())
        target.moveCenter(rect.center())
        painter.drawPixmap(target, pixmap)

    def _paint_badge(self, painter: QPainter, thumb: QRect, status: Status) -> None:
        colour = STATUS_COLOURS.get(status)
        if colour is None:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        radius = 9
        centre = QPointF(thumb.right() - radius + 3, thumb.bottom() - radius + 3)
        painter.setPen(QPen(QColor(255, 255, 255), 1.5))
        painter.setBrush(colour)
        painter.drawEllipse(centre, radius, radius)
        pen = QPen(QColor(255, 255, 255), 2.2)
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        painter.setPen(pen)
        x, y = centre.x(), centre.y()
        if status is Status.CAPTIONED:  # a tick
            painter.drawPolyline([QPointF(x - 4, y), QPointF(x - 1, y + 3), QPointF(x + 4, y - 3)])
        elif status is Status.FAILED:  # an exclamation mark
            painter.drawLine(QPointF(x, y - 4.5), QPointF(x, y + 1))
            painter.drawPoint(QPointF(x, y + 4.5))
        else:  # in progress: three dots
            for dx in (-4, 0, 4):
                painter.drawPoint(QPointF(x + dx, y))


def elided_lines(text: str, metrics: QFontMetrics, width: int, max_lines: int) -> list[str]:
    """The text wrapped at spaces into at most max_lines lines no wider than width; when it
    does not fit, the last line ends with an ellipsis (the list's tooltip has the whole text).
    """
    lines: list[str] = []
    words = text.split()
    while words and len(lines) < max_lines - 1:
        line = words.pop(0)
        while words and metrics.horizontalAdvance(f"{line} {words[0]}") <= width:
            line += " " + words.pop(0)
        lines.append(metrics.elidedText(line, Qt.TextElideMode.ElideRight, width))
    if words:
        rest = " ".join(words)
        lines.append(metrics.elidedText(rest, Qt.TextElideMode.ElideRight, width))
    return lines


class ImageListView(QListView):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.delegate = ImageItemDelegate(self)
        self.setItemDelegate(self.delegate)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.setUniformItemSizes(True)
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        self.setAlternatingRowColors(False)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(150)  # a narrow window keeps room for the photo
        self.setAccessibleName("Images")

    @property
    def grid(self) -> bool:
        return self.delegate.grid

    def set_grid(self, on: bool) -> None:
        """Thumbnails in a grid (on) or one row per photo with its caption (off)."""
        self.delegate.grid = on
        self.setViewMode(QListView.ViewMode.IconMode if on else QListView.ViewMode.ListMode)
        # Icon mode lets photos be dragged about the view; the list's order is the model's.
        self.setMovement(QListView.Movement.Static)
        self.setDragEnabled(False)
        self.setResizeMode(QListView.ResizeMode.Adjust)  # columns follow the dock's width
        self.setSpacing(GRID_SPACING if on else 0)
        self.scheduleDelayedItemsLayout()  # the delegate's size changed
        if self.currentIndex().isValid():
            self.scrollTo(self.currentIndex())

    # Moving through the list (over the rows a search hides).

    def select_row(self, row: int) -> None:
        index = self.model().index(row, 0)
        self.setCurrentIndex(index)
        self.scrollTo(index)

    def select_rows(self, rows: list[int], current: int) -> None:
        """Select these rows, `current` the one shown."""
        model = self.model()
        selection = QItemSelection()
        for row in rows:
            selection.select(model.index(row, 0), model.index(row, 0))
        self.select_row(current)
        self.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.Select)

    def visible_rows(self) -> list[int]:
        return [row for row in range(self.model().rowCount()) if not self.isRowHidden(row)]

    def step(self, delta: int) -> None:
        """Move `delta` photos down the list (up if negative), over those a search hides."""
        rows = self.visible_rows()
        if rows:
            current = self.currentIndex().row()
            if current in rows:
                position = rows.index(current) + delta
            else:  # the shown photo is hidden: the nearest shown one in that direction
                position = sum(row < current for row in rows) + (delta - 1 if delta > 0 else delta)
            self.select_row(rows[min(max(position, 0), len(rows) - 1)])
