"""
The Twisted adapter: connections, their transports and flow control, timers,
the output gathered per reactor turn, the log observer, the metrics.
"""
