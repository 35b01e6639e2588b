"""Simulated cameras, for the tests, the demo and the benchmarks; nothing here records or stores.

Owns the stand-ins for a lab's cameras: synthetic clips with known frame counts
(:mod:`.clip`), GStreamer's RTSP server serving them or a live test pattern
(:mod:`.rtsp`, driving :mod:`.rtsp_gst_server` under the system Python) and the
simulated ONVIF camera (:mod:`.onvif`: WS-Discovery in :mod:`.onvif_discovery`,
the device and media services in :mod:`.onvif_service`, their answers and
quirks in :mod:`.onvif_messages`).  It speaks the protocols with
:mod:`camera_discovery`'s message helpers and imports nothing that records,
stores or indexes footage.
"""
