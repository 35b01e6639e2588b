"""Finding cameras, and simulating them.

Owns ONVIF discovery (WS-Discovery and the device/media services; results are
plain dataclasses, nothing is persisted here) and the camera simulator in
:mod:`camera_discovery.simulator` (GStreamer RTSP server fed by generated
clips) used by the tests, the demo and the benchmarks.
"""
