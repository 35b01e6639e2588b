"""Object storage for finished segments and evidence packages.

Owns the object-store interface (:mod:`storage.base`), the object layout and
metadata codec (:mod:`storage.layout`), the S3 backend on the ``minio`` client
(:mod:`storage.s3`, its failures translated by :mod:`storage.s3_errors`), the
deletion guard (:mod:`storage.deletion`), the file hash stored objects carry
(:mod:`storage.hashing`), the spool of small locked documents (journal
batches, seals) on their way to the bucket (:mod:`storage.doc_spool`), the embedded SeaweedFS supervisor for the
single-box profile (:mod:`storage.seaweed`) with its per-installation keys and
credentials (:mod:`storage.seaweed_secrets`), a SeaweedFS cluster of separate
processes locked down the same way (:mod:`storage.seaweed_cluster`), and what each
profile protects against (:mod:`storage.protection`).

Knows nothing of the index or the recorder.  Invariants it guarantees:

1. An object reported stored exists as an immutable *version* whose COMPLIANCE
   retain-until was read back from the store and is >= the requested one.
2. The object's user metadata alone is enough to rebuild its index row.
3. No method shortens a retention.  One module deletes versions:
   :mod:`storage.deletion`, the guard the expiry sweep calls, which deletes only
   versions it has just read back as expired and unheld at the *now* it is given.
"""
