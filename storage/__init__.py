"""Object storage for finished segments.

Owns the object-store interface (:mod:`storage.base`), the object layout and
metadata codec (:mod:`storage.layout`), the S3 backend on the ``minio`` client
(:mod:`storage.s3`), a development filesystem backend that does *not* enforce
retention (:mod:`storage.fs`), and the embedded SeaweedFS supervisor for the
single-box profile (:mod:`storage.seaweed`).

Knows nothing of the index or the recorder.  Invariants it guarantees:

1. An object reported stored exists as an immutable *version* whose COMPLIANCE
   retain-until was read back from the store and is >= the requested one.
2. The object's user metadata alone is enough to rebuild its index row.
3. No method here deletes a version or shortens a retention.
"""
