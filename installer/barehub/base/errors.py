"""The one error type: a message, a hint for the admin, an exit code (bootstrap.py raises it too)."""


class BarehubError(Exception):
    """Raised by library code; each command line prints it once and maps it to the exit code."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
