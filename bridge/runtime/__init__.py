"""The running daemon: command line, supervisor, plugin loading, systemd, logging, demo."""
