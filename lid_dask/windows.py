"""Where in a file to listen.

Decoding is the cost that grows with the archive, so the engine decides first which windows it
needs and decodes only those. `WindowPlan` is the user's choice; `plan()` turns it into concrete
windows for a file of a known (or unknown) duration.
"""

from __future__ import annotations

from dataclasses import dataclass

STRATEGIES = ("first", "spread", "whole", "auto")


@dataclass(frozen=True)
class Window:
    """A span of the file in seconds; `duration` may end up shorter if the file ends early."""

    start: float
    duration: float

    @property
    def end(self) -> float:
        return self.start + self.duration


def covered_seconds(spans) -> float:
    """Seconds covered by (start, end) spans, each second counted once however many overlap:
    windows of a short file overlap (see `WindowPlan._tile`), and so does their speech."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


@dataclass(frozen=True)
class WindowPlan:
    """How to place windows in a file.

    - ``first``: one window at the start.
    - ``spread``: ``count`` windows spread over the file (intros, music and silence at the start
      of broadcasts are common, so the first seconds alone mislead).
    - ``whole``: cover the whole file with consecutive windows, up to ``max_whole`` seconds.
    - ``auto`` (default): ``whole`` for clips up to ``count`` windows long, else ``spread``; a
      long file may then be settled before all its windows ran (`ConsensusConfig.early_stop`).

    ``length`` is also the model context: 10 s costs a third of Whisper's 30 s on CPU and gives
    the same answers on short speech (see the brief).
    """

    strategy: str = "auto"
    count: int = 3
    length: float = 10.0
    max_whole: float = 120.0

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown window strategy {self.strategy!r}; choose one of {STRATEGIES}")
        if self.count < 1:
            raise ValueError("window count must be at least 1")
        if not 1.0 <= self.length <= 30.0:
            raise ValueError("window length must be between 1 and 30 seconds (Whisper's context)")

    @classmethod
    def parse(cls, text: str | WindowPlan | None) -> WindowPlan:
        """Parse ``strategy[:count[xlength]]``, e.g. ``spread:5x10``, ``first``, ``auto:3``."""
        if text is None:
            return cls()
        if isinstance(text, WindowPlan):
            return text
        strategy, _, rest = text.partition(":")
        kwargs: dict = {"strategy": strategy.strip().lower()}
        if rest:
            count, _, length = rest.partition("x")
            if not (count or length):
                raise ValueError(f"bad window plan {text!r}; expected e.g. 'spread:3x10'")
            try:
                if count:
                    kwargs["count"] = int(count)
                if length:
                    kwargs["length"] = float(length)
            except ValueError:
                raise ValueError(f"bad window plan {text!r}; expected e.g. 'spread:3x10'") from None
        return cls(**kwargs)

    def plan(self, duration: float | None) -> list[Window]:
        """Windows for a file of `duration` seconds (None: unknown, so only the start is safe)."""
        if duration is None or duration <= 0:
            return [Window(0.0, self.length)]
        if self.strategy == "first":
            return [Window(0.0, min(self.length, duration))]
        strategy = self.strategy
        if strategy == "auto":
            strategy = "spread" if self.auto_spreads(duration) else "whole"
        if strategy == "whole" and duration <= self.max_whole:
            return self._tile(0.0, duration)
        return self._spread(duration)

    def auto_spreads(self, duration: float | None) -> bool:
        """True when an ``auto`` plan spreads its windows over a file this long: the case where
        the engine may settle a file before its last window (see `ConsensusConfig.early_stop`)."""
        return self.strategy == "auto" and duration is not None and duration > self.count * self.length

    def _tile(self, start: float, end: float) -> list[Window]:
        windows = []
        t = start
        while t < end - 1e-9:
            windows.append(Window(t, min(self.length, end - t)))
            t += self.length
        # A short last window has little to say; merge it into a full-length final window.
        if len(windows) > 1 and windows[-1].duration < self.length / 2:
            windows[-1] = Window(max(start, end - self.length), min(self.length, end - start))
        return windows

    def _spread(self, duration: float) -> list[Window]:
        if duration <= self.count * self.length:
            return self._tile(0.0, duration)
        # Centre window i at (i + 0.5) / count of the file: never only the intro, never the outro.
        slack = duration - self.length
        starts = [
            min(slack, max(0.0, (i + 0.5) * duration / self.count - self.length / 2))
            for i in range(self.count)
        ]
        return [Window(s, self.length) for s in starts]
