"""Shared leaf of the labwitness distribution.

Owns only what every other package needs and nothing may own twice: the one
exception hierarchy (:mod:`labwitness.errors`), the clock
(:mod:`labwitness.clock`), and the media bitstream parsers
(:mod:`labwitness.media`: MP4 boxes, H.264/H.265 NAL units, AAC headers) that
the recorder and retention both read with, and the layout of the sub-stream
picture spool (:mod:`labwitness.picture_samples`) the recorder writes and the
content job reads.  It imports nothing from the other
packages, so any of them may import it without creating a cycle.
"""
