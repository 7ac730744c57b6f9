"""What a `prepare` run reports about its samples, as typed records instead of "id: reason" strings.

An `Issue` is either a failure (`kind` EXCLUDED: the sample is not in the file) or a warning (the sample is
kept, or the run itself met something: a scan problem, a resume note). The records travel as they are from
the worker to the writer, the summary, the failures CSV and the store; text is made from them only where a
person reads it (`str(issue)`), and the store's on-disk strings are converted back in one place (the reader).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: The sample is left out of the file (no face, unreadable input, ...).
EXCLUDED = "excluded"
#: Unreadable frames of a kept sample were filled from their neighbours.
REPAIRED = "frame repaired"
#: A kept sample's face was found on only part of its frames (the rest filled from neighbours).
PARTLY_COVERED = "partly covered"
#: A frame of another size than the one before it (its face detected again at the change).
RESIZED = "frame size changed"
#: Something the dataset scan met that is not one sample's (e.g. a folder it does not know); `sample` is "".
SCAN = "scan problem"
#: What a resumed run did with the earlier run's work; `sample` is "".
RESUME = "resume"

KINDS = (EXCLUDED, REPAIRED, PARTLY_COVERED, RESIZED, SCAN, RESUME)


@dataclass(frozen=True)
class Issue:
    """One reported problem: the sample it concerns ("" = the run), what kind of problem, and why."""

    sample: str
    kind: str
    reason: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown issue kind {self.kind!r}; expected one of {', '.join(KINDS)}")

    def __str__(self) -> str:
        """How a person reads it: "<sample>: <reason>", or "<kind>: <reason>" for the run's own."""
        return f"{self.sample or self.kind}: {self.reason}"

    @property
    def is_failure(self) -> bool:
        return self.kind == EXCLUDED

    def to_dict(self) -> dict[str, str]:
        return {"sample": self.sample, "kind": self.kind, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: dict[str, str]) -> Issue:
        return cls(str(d["sample"]), str(d["kind"]), str(d["reason"]))


def failure(sample: str, reason: str) -> Issue:
    """The record of a sample left out of the file."""
    return Issue(str(sample), EXCLUDED, str(reason))


def failures_json(issues: Iterable[Issue]) -> list[dict[str, str]]:
    """Failures as the JSON rows `ferbench prepare --json` and `ferbench inspect --json` print: {id, reason}."""
    return [{"id": i.sample, "reason": i.reason} for i in issues]
