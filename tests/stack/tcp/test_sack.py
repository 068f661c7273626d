"""The SACK scoreboard (RFC 6675 §4: IsLost, SetPipe, NextSeg's holes) and the receiver's
block choice (RFC 2018 §4)."""

from __future__ import annotations

from stack.tcp.sack import MAX_BLOCKS, Scoreboard, dsack_range, report_blocks

M = 1000  # SMSS


def board(*blocks: tuple[int, int]) -> Scoreboard:
    sb = Scoreboard()
    for a, b in blocks:
        sb.add(a, b)
    return sb


def test_add_merges_and_counts_new_bytes() -> None:
    sb = Scoreboard()
    assert sb.add(2000, 3000) == 1000
    assert sb.add(4000, 5000) == 1000
    assert sb.add(2500, 4500) == 1000  # bridges the gap: only 3000..4000 is new
    assert sb.blocks == [(2000, 5000)] and sb.sacked_bytes == 3000
    assert sb.add(2000, 5000) == 0
    assert sb.add(5000, 6000) == 1000 and sb.blocks == [(2000, 6000)]


def test_advance_forgets_below_the_cumulative_ack() -> None:
    sb = board((2000, 3000), (4000, 6000))
    sb.advance(5000)
    assert sb.blocks == [(5000, 6000)] and sb.sacked_bytes == 1000


def test_is_lost_by_bytes_or_by_three_ranges() -> None:
    # One hole at 1000..2000 with 3 SMSS SACKed above (> (DupThresh-1)*SMSS): lost.
    sb = board((2000, 5000))
    assert sb.is_lost(1000, M) and not sb.is_lost(5000, M)
    # Exactly 2 SMSS above is not enough.
    assert not board((2000, 4000)).is_lost(1000, M)
    # Three discontiguous single-byte ranges above: lost.
    sb = board((2000, 2001), (3000, 3001), (4000, 4001))
    assert sb.is_lost(1000, M) and not sb.is_lost(2500, M)


def test_pipe_rfc6675_setpipe() -> None:
    # snd_una 1000, HighData 8000; SACKed 3000..4000 and 5000..8000.
    sb = board((3000, 4000), (5000, 8000))
    # Lost boundary: 3 SMSS above 4000..5000 → everything un-SACKed below 5000 is lost.
    assert sb.lost_below(M) == 5000
    # Not retransmitted yet: un-SACKed octets 1000..3000 and 4000..5000 are all lost.
    assert sb.pipe(1000, 8000, 1000, M) == 0
    # After retransmitting 1000..2000 (HighRxt = 2000): those count once.
    assert sb.pipe(1000, 8000, 2000, M) == 1000
    # Unsent-and-not-lost data above the SACKs counts: HighData 9000.
    assert sb.pipe(1000, 9000, 2000, M) == 2000


def test_next_hole() -> None:
    sb = board((3000, 4000), (5000, 8000))
    assert sb.next_hole(1000, 5000) == (1000, 3000)
    assert sb.next_hole(3000, 5000) == (4000, 5000)
    assert sb.next_hole(5000, 5000) is None
    assert sb.next_hole(6000, 9000) == (8000, 9000)


def test_report_blocks_most_recent_first() -> None:
    ooo = [(2000, 3000), (4000, 5000), (6000, 7000), (8000, 9000), (10000, 11000)]
    recent = [(6000, 7000), (2000, 3000)]
    assert report_blocks(ooo, recent, 3) == [(6000, 7000), (2000, 3000), (4000, 5000)]
    assert report_blocks(ooo, recent, 4) == [(6000, 7000), (2000, 3000), (4000, 5000),
                                             (8000, 9000)]
    # A recent range merged into a larger block reports the whole block.
    assert report_blocks([(2000, 5000)], [(4000, 5000)], 4) == [(2000, 5000)]


def test_scoreboard_is_bounded() -> None:
    sb = Scoreboard()
    for i in range(MAX_BLOCKS + 100):
        sb.add(2 * i, 2 * i + 1)  # a peer SACKing every other byte
    assert len(sb) == MAX_BLOCKS
    assert sb.add(0, 10) == 5  # merging into existing ranges still works


def test_dsack_range_rfc2883_section4() -> None:
    # Below the cumulative ACK (§4.1), inside the second block (§4.2), or neither.
    assert dsack_range([(1000, 2000)], 3000) == (1000, 2000)
    assert dsack_range([(5000, 6000), (4000, 7000)], 3000) == (5000, 6000)
    assert dsack_range([(5000, 6000), (6000, 7000)], 3000) is None
    assert dsack_range([(5000, 6000)], 3000) is None
    assert dsack_range([], 3000) is None


def test_last_hole_is_the_highest_unsacked_range() -> None:
    assert board((3000, 4000)).last_hole(1000, 6000) == (4000, 6000)
    assert board((3000, 6000)).last_hole(1000, 6000) == (1000, 3000)
    assert board((2000, 3000), (4000, 6000)).last_hole(1000, 6000) == (3000, 4000)
    assert board((1000, 6000)).last_hole(1000, 6000) is None
