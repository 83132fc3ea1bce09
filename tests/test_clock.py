"""Event wall times follow the wall clock when time sync steps it after the start (fake clocks, and a
service whose wall clock is stepped while it runs)."""
import logging
import time
from datetime import datetime

from monitor.audio import StreamClock
from monitor.messages import EpisodeOpened, ServiceStatus
from monitor.service import Service
from tests.conftest import free_endpoint


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


def test_a_clock_step_while_the_service_runs_moves_the_next_episode_s_times_in_its_events(settings, models, tmp_path,
                                                                                          caplog):
    events = []
    service = Service(settings.with_overrides(
        audio={"input": "scenario:nicu", "speed": 0.0}, store={"url": f"sqlite:///{tmp_path / 'log.db'}"},
        bus={"endpoint": free_endpoint()}, service={"bed": "bed-clock"}), models=models,
        on_message=lambda envelope: events.append(envelope))

    def wall():  # NTP steps the PC's clock back an hour once the service has said it started
        return time.time() - (3600 if events else 0)

    service._stream_clock = StreamClock(0.0, wall)
    with caplog.at_level(logging.WARNING, logger="monitor.clock"):
        assert service.run().failed is None
    started = next(e for e in events if isinstance(e.event, ServiceStatus) and e.event.state == "started")
    opened = next(e.event.episode for e in events if isinstance(e.event, EpisodeOpened))
    later = (datetime.fromisoformat(opened.start_time) - datetime.fromisoformat(started.time)).total_seconds()
    assert abs(later - (opened.start_s - 3600)) < 1.0  # the cry 20 s in, on the corrected clock
    assert [r.getMessage()[:36] for r in caplog.records] == ["the wall clock stepped -3600.0 s (ti"]
