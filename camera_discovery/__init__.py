"""Finding cameras.

Owns ONVIF discovery (WS-Discovery and the device/media services; results are
plain dataclasses, nothing is persisted here), and a camera's clock settings
over ONVIF (:mod:`.onvif_time`: NTP server, manual time).  The simulated cameras the
tests, the demo and the benchmarks find are in the top-level :mod:`simulator`.
"""
