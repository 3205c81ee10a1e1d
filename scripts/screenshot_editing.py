"""The screenshot of the README's caption-editing paragraph: the real window on the sample
photos with a new caption library, one caption written by the person (the model's words below
it), one accepted, a search in the box above the list, and the caption being edited.

    xvfb-run -a -s "-screen 0 1400x900x24" .venv/bin/python scripts/screenshot_editing.py OUT.png
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from PySide6.QtCore import QBuffer, QIODevice  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from screenshot import save_small_png, wait_until  # noqa: E402

from gui.app import create_application  # noqa: E402
from gui.files import sample_images_dir  # noqa: E402
from gui.main_window import MainWindow  # noqa: E402
from gui.models.image_list import Status  # noqa: E402
from gui.settings import Settings  # noqa: E402


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot_editing.png")
    app = create_application([sys.argv[0]])
    folder = Path(tempfile.mkdtemp())
    window = MainWindow(
        Settings.from_file(str(folder / "settings.ini")),
        paths=[str(sample_images_dir())],
        library_path=str(folder / "library.sqlite3"),
        data_dir=str(folder),
    )
    window.resize(1320, 820)
    window.show()
    wait_until(lambda: window.session.model_info is not None, 300)
    window.caption_all()
    items = window.image_model.items
    wait_until(lambda: all(i.status is Status.CAPTIONED for i in items()), 300)
    names = [item.name for item in items()]
    window.select_row(names.index("chelsea.jpg"))
    window.review.accept_caption()
    window.select_row(names.index("astronaut.jpg"))
    window.review.change_caption(
        window.session.current_path, "Astronaut Eileen Collins in her flight suit", "typed", "Edit"
    )
    window.focus_search()
    QTest.keyClicks(window.search.box, "c")
    QTest.qWait(400)
    window.select_row(names.index("coffee.jpg"))
    wait_until(lambda: bool(window.words.words) and not window.viewer.busy, 120)
    window.review.start_editing()
    editor = window.caption_panel.editor
    editor.setText("An espresso in a red cup on a saucer")
    editor.setCursorPosition(len(editor.text()))
    QTest.qWait(600)
    shot = window.screen().grabWindow(window.winId())
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    shot.save(buffer, "PNG")
    size = save_small_png(bytes(buffer.data()), out)
    print(f"{out}: {size:,} bytes")
    window.caption_panel.editor.cancelled.emit()
    window.close()
    app.quit()


if __name__ == "__main__":
    main()
