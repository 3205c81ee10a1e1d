"""Nothing lost (#23): a window makes 100 caption edits through its real editing path, the
process is killed with SIGKILL the moment it says "done", and the app started again on the same
caption library shows all 100."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from conftest import show_main_window  # noqa: E402

from captioner.library import Library  # noqa: E402
from gui.settings import Settings  # noqa: E402

EDITS = 100
NAMES = ["astronaut", "chelsea", "coffee"]

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QApplication
    from gui.main_window import MainWindow
    from gui.settings import Settings

    photos, library, settings, data = sys.argv[1:5]
    app = QApplication([sys.argv[0]])
    window = MainWindow(
        Settings.from_file(settings), paths=[photos], model_dir=data + "/no-model",
        data_dir=data, library_path=library,
    )
    window.show()
    app.processEvents()
    for number in range({edits}):
        window.select_row(number % 3)
        window.actions.edit_caption.trigger()
        editor = window.caption_panel.editor
        editor.selectAll()
        QTest.keyClicks(editor, f"edit number {{number}}")
        QTest.keyClick(editor, Qt.Key.Key_Return)
    print("done", window.captions.unsaved, flush=True)
    while True:  # the edits are saved: nothing more is written before the kill
        app.processEvents()
        time.sleep(0.01)
    """
).format(edits=EDITS)


def test_100_edits_survive_sigkill(qtbot, tmp_path, photos):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in NAMES:
        photos[name].save(folder / f"{name}.png")
    library = tmp_path / "captions.sqlite3"
    data = tmp_path / "data"
    data.mkdir()
    script = tmp_path / "edit.py"
    script.write_text(SCRIPT, "utf-8")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": root}
    arguments = [str(folder), str(library), str(tmp_path / "s.ini"), str(data)]
    process = subprocess.Popen(
        [sys.executable, str(script), *arguments],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert line.split() == ["done", "0"], line or process.stderr.read()
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    paths = [str(folder / f"{name}.png") for name in NAMES]
    with Library.open(library) as opened:
        history = {path: [c.text for c in opened.history(path)] for path in paths}
    assert sum(len(texts) for texts in history.values()) == EDITS
    assert sorted(t for texts in history.values() for t in texts) == sorted(
        f"edit number {n}" for n in range(EDITS)
    )

    settings = Settings.from_file(str(tmp_path / "again.ini"))
    window = show_main_window(
        qtbot, settings, str(data / "no-model"), str(data), [folder], library_path=library
    )
    last = {paths[n % 3]: f"edit number {n}" for n in range(EDITS)}
    for row, item in enumerate(window.image_model.items()):
        assert item.caption == last[item.path]
        assert item.state == "mine"
        window.select_row(row)
        assert window.words.words == last[item.path].split()
