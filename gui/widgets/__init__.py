"""The window's parts: image list, viewer, caption panel, LSTM panel, settings."""
