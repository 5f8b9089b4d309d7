"""The demo's own error."""


class DemoError(Exception):
    """The demo could not complete; the message says why."""
