"""The captioner desktop app (PySide6). Start it with `captioner-gui` or `gui.app.main()`."""
