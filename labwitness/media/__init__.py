"""Media bitstreams, parsed: pure code that both the recorder and retention read with.

Owns the one reader of each format the recorder produces or receives, so that no
package writes a second one:

- :mod:`labwitness.media.mp4`: ISO BMFF boxes of the fragmented MP4 segments (init
  segment, ``moof``, ``mfra``, the salvage point of a segment cut short);
- :mod:`labwitness.media.h26x`: H.264 / H.265 NAL units (types, length-prefixed
  access units, SPS picture size);
- :mod:`labwitness.media.aac`: AAC AudioSpecificConfig and ADTS headers;
- :mod:`labwitness.media.bits`: the bit reader both codecs parse with.

No I/O and no PyAV: callers hand in bytes, or a ``read(offset, length)`` function
when only a few headers of a large file are wanted.
"""
