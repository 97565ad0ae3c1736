"""The one error type of barehub: a message, a hint for the admin and an exit code."""


class BarehubError(Exception):
    """Raised by library code; the CLI prints it once and maps it to the exit code."""

    def __init__(self, message: str, hint: str = "", exit_code: int = 1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code
