"""What happened to each input, and the summary of a run.

File names in JSON (the report, ``metadata.jsonl``): a name that is not valid UTF-8 is held, as
Python holds it (``os.fsdecode``, PEP 383), with each undecodable byte ``0xXY`` as the lone
surrogate ``U+DCXY``; JSON files write that as the escape ``\\udcXY``, so they stay valid UTF-8
and ``os.fsencode(json.loads(text))`` gives the original bytes back (:func:`json_text`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

DONE = "done"
SKIPPED = "skipped"
FAILED = "failed"
INTERRUPTED = "interrupted"
STATUSES = (DONE, SKIPPED, FAILED, INTERRUPTED)


class EngineError(RuntimeError):
    """The run itself failed (not one input): e.g. the Ray workers could not start."""


@dataclass(frozen=True)
class ItemResult:
    """The outcome of one input: ``status`` is done, skipped, failed or interrupted.

    ``reason`` says why it failed, was skipped or interrupted; for a done item it is empty or a
    warning (a partial video, frames scaled to one size).
    """

    location: str
    status: str
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass
class RunReport:
    """All item results of a run; ``exit_code`` is 0 only when nothing failed or was interrupted."""

    results: list[ItemResult] = field(default_factory=list)
    interrupted: bool = False

    def add(self, result: ItemResult) -> None:
        self.results.append(result)

    @property
    def counts(self) -> dict[str, int]:
        counted = Counter(result.status for result in self.results)
        return {status: counted.get(status, 0) for status in STATUSES}

    @property
    def failures(self) -> list[ItemResult]:
        return [result for result in self.results if result.status == FAILED]

    @property
    def warnings(self) -> list[ItemResult]:
        """Done items with a warning (a partial video, frames scaled to one size)."""
        return [result for result in self.results if result.status == DONE and result.reason]

    @property
    def exit_code(self) -> int:
        if self.interrupted:
            return 130
        return 1 if self.failures else 0

    def summary(self) -> str:
        counts = self.counts
        text = f"done {counts[DONE]}, skipped {counts[SKIPPED]}, failed {counts[FAILED]}"
        if self.warnings:
            text += f" ({len(self.warnings)} done with a warning)"
        if counts[INTERRUPTED] or self.interrupted:
            text += f", interrupted {counts[INTERRUPTED]} (run again to finish)"
        return text

    def to_json(self) -> str:
        """The whole report as JSON: counts and one record per item (names: see the module doc)."""
        return json_text(
            {
                "counts": self.counts,
                "interrupted": self.interrupted,
                "items": [asdict(r) for r in self.results],
            },
            indent=1,
        )


def describe_error(error: BaseException) -> str:
    """A one-line reason for a failed item: the message, prefixed by the type when it helps."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    kind = type(error).__name__
    if isinstance(error, (ValueError, TypeError)) and message:
        return message
    return f"{kind}: {message}" if message else kind


_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(data: object, **options) -> str:
    """``json.dumps`` keeping non-ASCII text as is, but lone surrogates as ``\\udcXY`` escapes.

    The result always encodes to UTF-8; ``json.loads`` restores the surrogates, and
    ``os.fsencode`` then the original bytes of a file name that was not UTF-8.
    """
    return escape_surrogates(json.dumps(data, ensure_ascii=False, **options))


def escape_surrogates(text: str) -> str:
    """``text`` with each lone surrogate (an undecodable file-name byte) as ``\\udcXY``: UTF-8 safe."""
    return _SURROGATE.sub(lambda match: f"\\u{ord(match.group()):04x}", text)
