"""Congestion control: Reno with byte counting (RFC 5681, RFC 3465) and CUBIC (RFC 9438),
the expected windows computed from the RFC formulas."""

from __future__ import annotations

import math

import pytest

from stack.tcp.congestion import (
    CUBIC_ALPHA,
    INFINITE_SSTHRESH,
    Cubic,
    Reno,
    initial_window,
    make_congestion_control,
)

SMSS = 1000
SEC = 1_000_000_000
MS = 1_000_000


def test_initial_window_rfc6928() -> None:
    assert initial_window(1448, 10) == 14480
    assert initial_window(1460, 10) == 14600
    assert initial_window(8960, 10) == 17920  # max(2*MSS, 14600) caps jumbo segments
    assert initial_window(1000, 1) == 1000


def test_reno_slow_start_counts_bytes_with_limit_two_smss() -> None:
    r = Reno(SMSS, 10)
    assert (r.cwnd, r.ssthresh) == (10_000, INFINITE_SSTHRESH)
    r.on_ack(1000, None, 0)
    assert r.cwnd == 11_000
    r.on_ack(5000, None, 0)  # RFC 3465 §2.2: at most L = 2*SMSS per ACK
    assert r.cwnd == 13_000


def test_reno_congestion_avoidance_one_smss_per_window() -> None:
    r = Reno(SMSS, 10)
    r.ssthresh = 10_000
    for _ in range(9):
        r.on_ack(1000, None, 0)
    assert r.cwnd == 10_000 and r.bytes_acked == 9000
    r.on_ack(1000, None, 0)  # bytes_acked reached cwnd: cwnd += SMSS (RFC 3465 §2.1)
    assert r.cwnd == 11_000 and r.bytes_acked == 0
    for _ in range(11):
        r.on_ack(1000, None, 0)
    assert r.cwnd == 12_000


def test_reno_loss_and_timeout() -> None:
    r = Reno(SMSS, 10)
    r.on_loss(0, 20_000)  # RFC 5681 (4): max(FlightSize/2, 2*SMSS)
    assert (r.ssthresh, r.cwnd) == (10_000, 10_000)
    r.on_timeout(0, 3000)
    assert (r.ssthresh, r.cwnd) == (2000, 1000)  # loss window = 1 SMSS


def test_cubic_formula_values() -> None:
    c = Cubic(SMSS, 10)
    c.cwnd = 100 * SMSS
    c.on_loss(0, 100 * SMSS)
    # RFC 9438 §4.6: ssthresh = cwnd = FlightSize * 0.7; W_max = 100 segments.
    assert (c.ssthresh, c.cwnd, c.w_max) == (70_000, 70_000, 100)
    c.on_ack(SMSS, 100 * MS, 5 * SEC)  # starts the epoch at t = 5 s
    k = (30 / 0.4) ** (1 / 3)  # K = cbrt((W_max - cwnd_epoch) / C) = cbrt(75)
    assert c.k == pytest.approx(k)
    assert c.w_cubic(0) == pytest.approx(70)
    assert c.w_cubic(k) == pytest.approx(100)
    assert c.w_cubic(k + 1) == pytest.approx(100.4)  # 0.4 * 1**3 + 100
    assert c.w_cubic(k + 2) == pytest.approx(103.2)


def test_cubic_window_growth_concave_region() -> None:
    c = Cubic(SMSS, 10)
    c.cwnd = 100 * SMSS
    c.on_loss(0, 100 * SMSS)
    t0 = 10 * SEC
    rtt = 100 * MS
    c.on_ack(SMSS, rtt, t0)
    # First ACK of the epoch: W_est = 70 + α*1/70 exceeds W_cubic(0) = 70: Reno-friendly.
    w_est = 70 + CUBIC_ALPHA * 1 / 70
    assert c.cwnd == int(w_est * SMSS)
    # Two seconds later W_cubic(2) ≈ 95.6 is far above W_est: concave region (§4.4),
    # cwnd += (target - cwnd) / cwnd with target = W_cubic(t + RTT).
    k = 75 ** (1 / 3)
    cwnd = w_est
    target = min(max(0.4 * (2.1 - k) ** 3 + 100, cwnd), 1.5 * cwnd)
    expected = cwnd + (target - cwnd) / cwnd
    c.on_ack(SMSS, rtt, t0 + 2 * SEC)
    assert c.cwnd == int(expected * SMSS)
    assert c.cwnd / SMSS == pytest.approx(70.38, abs=0.01)


def test_cubic_convex_region_and_target_clamp() -> None:
    c = Cubic(SMSS, 10)
    c.cwnd = 100 * SMSS
    c.on_loss(0, 100 * SMSS)
    c.on_ack(SMSS, 0, 0)  # epoch at t = 0
    cwnd = c.cwnd / SMSS
    t = 20.0  # far past K: W_cubic(20) ≈ 0.4*15.78**3 + 100 ≈ 1672 → target clamped to 1.5*cwnd
    c.on_ack(2 * SMSS, 0, int(t * SEC))
    target = 1.5 * cwnd
    assert c.cwnd / SMSS == pytest.approx(cwnd + (target - cwnd) / cwnd * 2, rel=1e-9)


def test_cubic_reno_friendly_alpha_becomes_one() -> None:
    c = Cubic(SMSS, 10)
    c.cwnd = 10 * SMSS
    c.on_loss(0, 10 * SMSS)  # cwnd_prior = 10, cwnd = 7
    c.on_ack(SMSS, 0, 0)
    assert c.alpha == CUBIC_ALPHA
    for _ in range(200):  # W_est climbs past cwnd_prior (§4.3): α becomes 1
        c.on_ack(SMSS, 0, 0)
    assert c.alpha == 1.0
    assert c.w_est >= 10


def test_cubic_fast_convergence() -> None:
    c = Cubic(SMSS, 10)
    c.cwnd = 100 * SMSS
    c.on_loss(0, 100 * SMSS)
    c.cwnd = 90 * SMSS
    c.on_loss(0, 90 * SMSS)  # §4.7: cwnd below the last W_max: W_max = cwnd*(1+β)/2
    assert c.w_max == pytest.approx(90 * 1.7 / 2)
    assert c.ssthresh == 63_000


def test_cubic_timeout_then_epoch_with_k_zero() -> None:
    c = Cubic(SMSS, 10)
    c.cwnd = 50 * SMSS
    c.on_timeout(0, 50 * SMSS)
    assert (c.cwnd, c.ssthresh) == (SMSS, 35_000)  # §4.8: β for ssthresh, 1 SMSS loss window
    c.ssthresh = 2 * SMSS
    c.cwnd = 2 * SMSS
    c.on_ack(SMSS, 0, SEC)  # first CA ack after the timeout: K = 0, W_max = cwnd (§4.8)
    assert c.k == 0.0 and c.w_max == 2.0


def test_slow_start_is_standard_in_cubic() -> None:
    c = Cubic(SMSS, 10)
    c.on_ack(1000, None, 0)
    c.on_ack(4000, None, 0)
    assert c.cwnd == 13_000
    assert math.isclose(CUBIC_ALPHA, 3 * 0.3 / 1.7)


def test_factory() -> None:
    assert isinstance(make_congestion_control("reno", 1448, 10), Reno)
    assert isinstance(make_congestion_control("cubic", 1448, 10), Cubic)
    with pytest.raises(ValueError):
        make_congestion_control("bbr", 1448, 10)
