"""A sans-IO TCP (RFC 9293) with window scaling and timestamps (RFC 7323), SACK
(RFC 2018, RFC 6675), RFC 6298 retransmission timing, Reno/NewReno (RFC 5681, RFC 6582)
and CUBIC (RFC 9438) congestion control, emitting TSO-sized segments when allowed.

Modules: :mod:`~stack.tcp.seq` (modular arithmetic), :mod:`~stack.tcp.segment`
(``Segment``, ``Outgoing``), :mod:`~stack.tcp.config` (``TcpConfig``),
:mod:`~stack.tcp.options`, :mod:`~stack.tcp.rtt`, :mod:`~stack.tcp.congestion`,
:mod:`~stack.tcp.sack`, :mod:`~stack.tcp.send_buffer`, :mod:`~stack.tcp.receive_buffer`,
:mod:`~stack.tcp.state` (``TcpState``, ``TcpError``), :mod:`~stack.tcp.counters` and
:mod:`~stack.tcp.connection` (``TcpConnection``, ``rst_for``), whose class is built in
layers in :mod:`~stack.tcp.tcb`, :mod:`~stack.tcp.output`, :mod:`~stack.tcp.recovery`,
:mod:`~stack.tcp.timers` and :mod:`~stack.tcp.input`.
"""
