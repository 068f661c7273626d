"""RFC 6298 retransmission timeout: the numbers computed by hand."""

from __future__ import annotations

from stack.tcp.rtt import RttEstimator

MS = 1_000_000
SEC = 1_000 * MS


def estimator() -> RttEstimator:
    return RttEstimator(1 * SEC, 200 * MS, 120 * SEC)


def test_initial_rto_is_one_second() -> None:
    assert estimator().rto == 1 * SEC  # §2.1


def test_rto_for_a_sample_sequence() -> None:
    est = estimator()
    # §2.2: SRTT = R, RTTVAR = R/2, RTO = SRTT + max(G, 4*RTTVAR) = 100 + 200
    est.sample(100 * MS)
    assert (est.srtt, est.rttvar, est.rto) == (100 * MS, 50 * MS, 300 * MS)
    # §2.3: RTTVAR = 3/4*50 + 1/4*|100-200| = 62.5; SRTT = 7/8*100 + 1/8*200 = 112.5
    est.sample(200 * MS)
    assert (est.srtt, est.rttvar) == (112_500_000, 62_500_000)
    assert est.rto == 112_500_000 + 4 * 62_500_000  # 362.5 ms
    # RTTVAR = 3/4*62.5 + 1/4*12.5 = 50; SRTT = 7/8*112.5 + 1/8*100 = 110.9375
    est.sample(100 * MS)
    assert (est.srtt, est.rttvar) == (110_937_500, 50 * MS)
    assert est.rto == 310_937_500


def test_rto_min_applies() -> None:
    est = estimator()
    est.sample(10 * MS)  # 10 + 4*5 = 30 ms, below the 200 ms floor (§2.4)
    assert est.rto == 200 * MS


def test_backoff_doubles_up_to_rto_max_and_a_sample_clears_it() -> None:
    est = estimator()
    est.sample(100 * MS)
    seen = []
    for _ in range(12):
        est.back_off()
        seen.append(est.rto)
    assert seen[:5] == [600 * MS, 1200 * MS, 2400 * MS, 4800 * MS, 9600 * MS]
    assert seen[-1] == 120 * SEC and max(seen) == 120 * SEC  # §5.5 with §2.5's maximum
    est.sample(100 * MS)
    assert est.backoff == 0 and est.rto < 1 * SEC


def test_syn_timeout_fallback_is_three_seconds() -> None:
    est = estimator()
    est.back_off()
    est.syn_timed_out()  # §5.7
    assert est.rto == 3 * SEC
