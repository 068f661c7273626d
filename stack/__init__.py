"""The TCP/IP stack above the driver. It knows a network device only through the small
protocol in :mod:`stack.device`."""
