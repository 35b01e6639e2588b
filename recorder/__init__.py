"""Recording: RTSP in, keyframe-aligned fMP4 segments out, safely into storage.

Owns, one module a stage:

- :mod:`recorder.timing`    wall-clock timeline of an RTSP session (pure)
- :mod:`recorder.stream_clock` the camera's clock vs the index time, from RTCP sender reports (pure)
- :mod:`recorder.backoff`   reconnect schedule and the uploader's retry gates (pure)
- :mod:`recorder.spool`     local spool: write, fsync, commit, recover, quota
- :mod:`recorder.inputs`    one RTSP session as packets: FFmpeg's client (PyAV) or the native one
- :mod:`recorder.rtsp_native` labwitness's RTSP client, RTP over TCP/TLS/UDP (``LABWITNESS_RTSP_CLIENT=native``),
  over :mod:`recorder.sdp` (DESCRIBE answers, pure), :mod:`recorder.rtsp_auth` (Basic/Digest, pure),
  :mod:`recorder.rtsp_conn` (the connection: requests, receive buffer, keep-alive, TLS pinning),
  :mod:`recorder.rtsp_session` (OPTIONS to PLAY), :mod:`recorder.rtp_udp` (RTP over UDP) and
  :mod:`recorder.rtsp_redirect` (3xx targets and credentials, pure)
- :mod:`recorder.session_resets` cameras resetting sessions on a period (pure);
  :mod:`recorder.camera_needs` what a camera needs from the native client, learned while recording
- :mod:`recorder.rtp_depacketize` RTP -> H.264/H.265/AAC access units (pure)
- :mod:`recorder.reorder`   decode timestamps from presentation times in decode order, B-frames (pure)
  :mod:`recorder.rtsp_conn` (the connection: requests, receive buffer, keep-alive) and
  :mod:`recorder.rtsp_session` (OPTIONS to PLAY)
- :mod:`recorder.rtp_depacketize` RTP -> H.264/H.265/AAC/G.711 access units (pure)
- :mod:`recorder.audio_transcode` a camera's audio: copied, G.711 transcoded to AAC, or said to be lost
- :mod:`recorder.audio_route` each audio packet into the segment its time belongs to
- :mod:`recorder.segmenter` PyAV stream copy of packets into one fMP4 file
- :mod:`recorder.worker`    one camera: ``run()`` around ``run_once()``
- :mod:`recorder.uploader`  spool -> storage (locked, verified) -> index
- :mod:`recorder.substream` one camera's sub stream: a keyframe per sample interval into the
  picture spool for content health (never recorded)
- :mod:`recorder.service`   starts workers, samplers and the uploader for a set of cameras

Uses ``storage`` and ``index``; never ``retention`` (the retain-until rule is
passed in as a callable) and never ``api``.
"""
