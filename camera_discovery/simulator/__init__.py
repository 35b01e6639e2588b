"""Simulated cameras: generated clips (:mod:`.clip`) served over real RTSP (:mod:`.rtsp`)."""
