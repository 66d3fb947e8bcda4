"""The node's reading of Redis's clock (L{chat.cluster.clock.RedisClock})."""

from __future__ import annotations

from chat.cluster.clock import RedisClock


def test_no_deadline_before_a_reading() -> None:
    assert RedisClock(0.2).deadline(1000.0, 2.5) == 0.0


def test_the_offset_is_taken_at_the_midpoint_of_the_round_trip() -> None:
    clock = RedisClock(0.2)
    # Sent at 1000.0, answered at 1000.1: Redis said 1060.05, so it is 60 s ahead.
    clock.read(1000.0, 1000.1, [b"1060", b"50000"])
    assert clock.offset is not None and abs(clock.offset - 60.0) < 1e-6
    assert abs(clock.deadline(1001.0, 2.5) - 1063.5) < 1e-6


def test_a_reading_from_a_long_round_trip_is_not_used() -> None:
    """Redis stopped for 8 s while the command waited: its TIME says nothing of the offset."""
    clock = RedisClock(0.2)
    clock.read(1000.0, 1000.01, ["1000", "5000"])
    clock.read(2000.0, 2008.0, ["2008", "0"])
    assert clock.offset is not None and abs(clock.offset) < 1e-6
