"""Video jobs: accepted by the gateway, run later by workers, read back by the caller.

- `store`: the embedded job store (SQLite, AES-GCM at rest) and `open_job_store`;
  `redis_store`: the same contract on Redis Streams, for workers on many machines;
- `result_objects`: finished videos in S3-compatible storage, as presigned URLs;
- `worker`: takes jobs from the store and runs them on Triton;
- `service`: the facefuse.v1.VideoJobs RPCs (submit, poll, cancel, read).

Imports go down only: `facefuse.gateway` builds the job system and hands it what the
gateway owns (its call guard, with auth, quotas, release choice and error mapping, to
the service; its Triton pool to the worker; the registration on its gRPC server).
Nothing here imports `facefuse.gateway`; both use the lower pieces (`facefuse.errors`,
`facefuse.scopes`, `facefuse.vision.codec`, `facefuse.video`, `facefuse.triton_client`).
`tests/unit/test_jobs_imports.py` holds the line.
"""
