"""The runner's old import path: the runner lives in ``processors.engine.runner``.

Kept so that the pinned-heads test, whose file stays byte for byte as it was pinned, still
imports from here; everything else imports ``processors.engine.runner``.
"""

from processors.engine.runner import Books, Outcome, Refused, run

__all__ = ["Books", "Outcome", "Refused", "run"]
