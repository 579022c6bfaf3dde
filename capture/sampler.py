"""Pure rule: which decoded frames to publish so a camera yields ``fps`` frames a second.

Decisions go by the frame's own presentation time (exact, as a Fraction of its time base),
not by when it was decoded, so a stream delivered in bursts is sampled as evenly as it was
shot: of a 25 fps source at 5 fps, frames 0, 5, 10, ... are kept, whatever the jitter.
"""

from __future__ import annotations

from fractions import Fraction

# A frame up to this early for its slot still takes it: sources whose frame times are rounded
# to their time base (29.97 fps in 1/1000) would otherwise slip a whole frame every few slots.
_TOLERANCE = Fraction(1, 1000)


class FpsSampler:
    """Keeps the first frame, then the first frame at or after each 1/fps slot."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.interval = Fraction(1) / Fraction(fps).limit_denominator(1_000_000)
        self._due: Fraction | None = None
        self._last: Fraction | None = None

    def reset(self) -> None:
        """A new stream (reconnect, or a file starting over): its times start anew."""
        self._due = None
        self._last = None

    def keep(self, t: Fraction) -> bool:
        """Whether the frame presented at ``t`` seconds is published."""
        if self._last is not None and t < self._last:
            self.reset()  # time went backwards: the source restarted its clock
        self._last = t
        if self._due is None:
            self._due = t + self.interval
            return True
        if t + _TOLERANCE < self._due:
            return False
        # Slots the source skipped (a gap in the stream) are not made up for with a burst.
        while self._due <= t + _TOLERANCE:
            self._due += self.interval
        return True
