"""Recording: RTSP in, keyframe-aligned fMP4 segments out, safely into storage.

Owns, one module a stage:

- :mod:`recorder.timing`    wall-clock timeline of an RTSP session (pure)
- :mod:`recorder.backoff`   reconnect schedule (pure)
- :mod:`recorder.spool`     local spool: write, fsync, commit, recover, quota
- :mod:`recorder.segmenter` PyAV stream copy of packets into one fMP4 file
- :mod:`recorder.worker`    one camera: ``run()`` around ``run_once()``
- :mod:`recorder.uploader`  spool -> storage (locked, verified) -> index
- :mod:`recorder.service`   starts workers and the uploader for a set of cameras

Uses ``storage`` and ``index``; never ``retention`` (the retain-until rule is
passed in as a callable) and never ``api``.
"""
