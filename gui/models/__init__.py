"""Qt item models: the data the views show."""
