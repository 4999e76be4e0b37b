"""Asynchronous jobs: create → presigned upload → S3 event / local worker / Batch → status + result."""
