"""The one error of the claim files: what is wrong, as a list a person can act on."""

from __future__ import annotations

from collections.abc import Iterable


class ClaimError(ValueError):
    """A claim, table or envelope that must not leave the facility.

    ``problems`` lists every problem found, each naming its table and field, so that staff fix
    them all in one pass instead of one per attempt.
    """

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))
