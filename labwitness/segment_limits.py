"""How long one recorded segment can be: the recorder cuts by it, the index relies on it.

The recorder aims at ``LABWITNESS_SEGMENT_SECONDS`` (at most
:data:`MAX_TARGET_SECONDS`) and cuts at the first keyframe after it; a camera
whose keyframe does not come is cut at :data:`MAX_TARGET_FACTOR` targets.
Whatever its configuration, ``recorder.worker`` cuts every segment before its
wall-clock length reaches :data:`MAX_SEGMENT_MS`.

The index's footage, report, coverage, compliance and content queries bound
their lower edge with the same constant (``start_ms > lo - MAX_SEGMENT_MS``
keeps them index range scans): a segment longer than it would vanish from all
of them, so the two must never drift apart -- hence one constant, here.
"""

from __future__ import annotations

#: the longest target segment length a configuration may ask for (``LABWITNESS_SEGMENT_SECONDS``)
MAX_TARGET_SECONDS = 600
#: a segment whose keyframe never comes is cut at this many targets
MAX_TARGET_FACTOR = 4.0
#: the longest segment (wall clock) the recorder ever writes: 600 s x 4 = 40 min
MAX_SEGMENT_MS = int(MAX_TARGET_SECONDS * MAX_TARGET_FACTOR * 1000)
