"""barehub's one error type. It is defined in barehub.shared, because bootstrap.py raises it too."""
from barehub.shared import BarehubError  # noqa: F401
