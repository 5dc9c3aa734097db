"""The one exception type the exporter raises for expected failures."""


class ExportError(Exception):
    """A model could not be exported; the message is meant for the user, on one line."""
