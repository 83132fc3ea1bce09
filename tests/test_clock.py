"""Event wall times follow the wall clock when time sync steps it after the start (fake clocks)."""
import logging

from monitor.clock import StreamClock


class Clocks:
    """A PC's wall and monotonic clocks; `step` is time sync correcting the wall clock alone."""

    def __init__(self):
        self.wall_now, self.monotonic_now = 1_800_000_000.0, 50.0

    def wall(self):
        return self.wall_now

    def monotonic(self):
        return self.monotonic_now

    def run(self, seconds):
        self.wall_now += seconds
        self.monotonic_now += seconds


def test_a_position_is_stamped_at_the_anchor_plus_stream_time_at_the_playback_speed():
    clocks = Clocks()
    live, fast = StreamClock(1.0, clocks.wall, clocks.monotonic), StreamClock(4.0, clocks.wall, clocks.monotonic)
    as_fast_as_possible = StreamClock(0.0, clocks.wall, clocks.monotonic)
    start = clocks.wall_now
    clocks.run(10)
    assert live.wall(10.0) == start + 10 and fast.wall(40.0) == start + 10 and as_fast_as_possible.wall(3.0) == start + 3
    clocks.run(20)  # the microphone is lost for 20 s at stream position 10 s, then reopened
    live.anchor(10.0)  # the stream lost time the wall clock did not
    assert live.wall(12.0) == start + 30 + 2


def test_a_wall_clock_step_moves_later_event_times_and_is_logged_once(caplog):
    clocks = Clocks()
    clock = StreamClock(1.0, clocks.wall, clocks.monotonic)
    start = clocks.wall_now
    clocks.run(5)
    assert clock.wall(5.0) == start + 5
    clocks.wall_now -= 3600  # the PC started an hour fast; NTP steps it back
    clocks.run(5)
    with caplog.at_level(logging.WARNING, logger="monitor.clock"):
        assert clock.wall(10.0) == start + 10 - 3600
        assert clock.wall(5.0) == start + 5 - 3600  # earlier positions too, on the corrected clock
        clocks.run(5)
        assert clock.wall(15.0) == start + 15 - 3600
    [warning] = caplog.records
    assert "stepped -3600.0 s" in warning.getMessage()


def test_small_corrections_are_followed_without_a_warning(caplog):
    clocks = Clocks()
    clock = StreamClock(1.0, clocks.wall, clocks.monotonic)
    start = clocks.wall_now
    with caplog.at_level(logging.WARNING, logger="monitor.clock"):
        clocks.wall_now += 1.5
        assert clock.wall(0.0) == start + 1.5
        clocks.wall_now += 0.01  # read jitter between the two clocks is not a correction
        assert clock.wall(0.0) == start + 1.5
    assert caplog.records == []
