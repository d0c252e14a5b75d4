"""tito: the command-line tool of the TinyTorch course (`tito --help`)."""

__version__ = "0.1.0"
