"""The Textual dashboard: subscribes to one or more monitors' event buses."""
