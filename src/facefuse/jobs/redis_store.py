"""Video jobs on Redis Streams: one queue shared by gateways and workers on many machines.

The same contract as the embedded store (facefuse.jobs.store.JobStore), on Redis:
- each job is a hash (`<prefix>job:<id>`): state, tenant, options, the encrypted photo;
- the queue is a stream (`<prefix>queue`) read by the consumer group `workers`: a
  worker takes an entry with XREADGROUP, its lease is the entry's pending idle time
  (renewed by every progress report with XCLAIM to itself), and an entry idle longer
  than the lease is taken over by the next worker with XAUTOCLAIM (at-least-once);
- state changes that must only happen to the attempt holding a job (report, finish,
  fail, release) are Lua scripts, atomic on the server; a superseded attempt's result
  is never written;
- results are encrypted like the embedded store's and stored under their own key with
  a Redis expiry (`result_ttl_s`), so they are deleted by Redis itself.
Durability is Redis's: run it with appendonly (the tests use `appendfsync always`).
"""

from __future__ import annotations

import time

import redis
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facefuse.errors import FacefuseError, Reason
from facefuse.jobs.store import (
    THROUGHPUT_SMOOTHING, ClaimedJob, Job, JobNotDone, JobNotFound, JobState, new_job_id, seal, unseal,
)

GROUP = "workers"
# Job records outlive their results this many times, so a poll after expiry says
# 'expired' rather than 'not found'.
RECORD_TTL_FACTOR = 7

# KEYS: job hash. ARGV: worker, attempt, then field/value pairs to set.
# Sets them only while the job is running under this worker and attempt.
_IF_HELD = """
local h = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts')
if h[1] ~= 'running' or h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then return 0 end
for i = 3, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return 1
"""
# KEYS: job hash, result key, active set, queue. ARGV: worker, attempt, result, ttl ms,
# now, expires, frames, stream id, job id. Publishes the result only for the holder.
_FINISH = """
local h = redis.call('HMGET', KEYS[1], 'state', 'worker', 'attempts')
if h[1] ~= 'running' or h[2] ~= ARGV[1] or h[3] ~= ARGV[2] then return 0 end
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
redis.call('HSET', KEYS[1], 'state', 'done', 'finished_s', ARGV[5], 'expires_s', ARGV[6],
           'frames_done', ARGV[7], 'frame_count', ARGV[7])
redis.call('HDEL', KEYS[1], 'photo')
redis.call('SREM', KEYS[3], ARGV[9])
redis.call('XACK', KEYS[4], 'workers', ARGV[8])
return 1
"""
# KEYS: job hash, active set. ARGV: tenant, now, expires, job id. Cancels queued/running.
_CANCEL = """
local h = redis.call('HMGET', KEYS[1], 'state', 'tenant')
if h[2] ~= ARGV[1] then return -1 end
if h[1] ~= 'queued' and h[1] ~= 'running' then return 0 end
redis.call('HSET', KEYS[1], 'state', 'cancelled', 'finished_s', ARGV[2], 'expires_s', ARGV[3])
redis.call('HDEL', KEYS[1], 'photo')
redis.call('SREM', KEYS[2], ARGV[4])
return 1
"""


class RedisJobStore:
    def __init__(self, url: str, key: bytes, result_ttl_s: float, lease_s: float, prefix: str = "facefuse:video:"):
        self.redis = redis.Redis.from_url(url)
        self.aead = AESGCM(key)
        self.result_ttl_s, self.lease_s, self.prefix = result_ttl_s, lease_s, prefix
        self.queue = prefix + "queue"
        try:
            self.redis.xgroup_create(self.queue, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._if_held = self.redis.register_script(_IF_HELD)
        self._finish = self.redis.register_script(_FINISH)
        self._cancel = self.redis.register_script(_CANCEL)

    def close(self) -> None:
        self.redis.close()

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def _active_key(self, tenant: str) -> str:
        return f"{self.prefix}active:{tenant}"

    def _result_key(self, job_id: str) -> str:
        return f"{self.prefix}result:{job_id}"

    @staticmethod
    def _job(job_id: str, h: dict) -> Job:
        text = {k.decode(): v for k, v in h.items()}

        def number(name, cast=float):
            value = text.get(name)
            return cast(value) if value not in (None, b"") else None

        state = JobState(text["state"].decode())
        expires = number("expires_s")
        if state in (JobState.DONE, JobState.FAILED, JobState.CANCELLED) and expires is not None and expires < time.time():
            state = JobState.EXPIRED
        return Job(
            job_id, text["tenant"].decode(), text["template_id"].decode(), text["options"].decode(), state,
            number("created_s"), number("finished_s"), expires, number("frames_done", int) or 0,
            number("frame_count", int) or 0, text.get("failure_reason", b"").decode(),
            text.get("failure_detail", b"").decode(), number("attempts", int) or 0,
        )

    # ---- callers' side ---------------------------------------------------------------
    def submit(self, tenant: str, template_id: str, options_json: str, photo: bytes, frame_count: int,
               max_queued_per_tenant: int) -> Job:
        active = self.redis.scard(self._active_key(tenant))
        if active >= max_queued_per_tenant:
            raise FacefuseError(f"{active} video jobs of this tenant are queued or running; at most {max_queued_per_tenant}",
                                Reason.RATE_LIMITED)
        job_id = new_job_id()
        record = {"tenant": tenant, "template_id": template_id, "options": options_json, "state": "queued",
                  "photo": seal(self.aead, photo, job_id), "created_s": time.time(), "frames_done": 0,
                  "frame_count": frame_count, "attempts": 0}
        # The record first, then the queue entry: a worker never sees an entry without its job.
        with self.redis.pipeline() as pipe:
            pipe.hset(self._job_key(job_id), mapping=record)
            pipe.sadd(self._active_key(tenant), job_id)
            pipe.execute()
        stream_id = self.redis.xadd(self.queue, {"job_id": job_id})
        self.redis.hset(self._job_key(job_id), "stream_id", stream_id)
        return self.get(job_id, tenant)

    def _record(self, job_id: str, tenant: str) -> dict:
        h = self.redis.hgetall(self._job_key(job_id)) if job_id else {}
        if not h or h.get(b"tenant", b"").decode() != tenant:
            raise JobNotFound(f"no video job {job_id!r} for this caller (unknown, or another tenant's)")
        return h

    def get(self, job_id: str, tenant: str) -> Job:
        h = self._record(job_id, tenant)
        job = self._job(job_id, h)
        position, frames_ahead = None, job.frame_count - job.frames_done
        if job.state is JobState.QUEUED and h.get(b"stream_id"):
            groups = {g["name"].decode(): g for g in self.redis.xinfo_groups(self.queue)}
            delivered = groups[GROUP]["last-delivered-id"].decode()
            own = h[b"stream_id"].decode()
            # Entries not yet handed to a worker and older than this one; cancelled jobs'
            # entries stay in the stream until a worker skips them, so count queued jobs.
            entries = self.redis.xrange(self.queue, min=f"({delivered}", max=f"({own}")
            with self.redis.pipeline() as pipe:
                for _, fields in entries:
                    pipe.hmget(self._job_key(fields[b"job_id"].decode()), "state", "frame_count")
                ahead = [int(frames or 0) for state, frames in pipe.execute() if state == b"queued"]
            position = len(ahead)
            frames_ahead += sum(ahead)
        fps = self.throughput_fps()
        eta = frames_ahead / fps if fps and job.state in (JobState.QUEUED, JobState.RUNNING) else None
        return Job(**{**job.__dict__, "queue_position": position, "eta_s": eta})

    def cancel(self, job_id: str, tenant: str) -> Job:
        self._record(job_id, tenant)
        now = time.time()
        self._cancel(keys=[self._job_key(job_id), self._active_key(tenant)],
                     args=[tenant, now, now + self.result_ttl_s, job_id])
        return self.get(job_id, tenant)

    def result(self, job_id: str, tenant: str) -> bytes:
        job = self.get(job_id, tenant)
        sealed = self.redis.get(self._result_key(job_id)) if job.state is JobState.DONE else None
        if sealed is None:
            raise JobNotDone(f"video job {job_id} is {job.state.value}, not done: no result to read; "
                             "read it once GetVideoJob says done")
        return unseal(self.aead, sealed, job_id)

    # ---- workers' side ---------------------------------------------------------------
    def claim(self, worker: str) -> ClaimedJob | None:
        """A queue entry idle past its lease (its worker died), else a new one."""
        lease_ms = int(self.lease_s * 1000)
        while True:
            _, entries, *_ = self.redis.xautoclaim(self.queue, GROUP, worker, lease_ms, "0-0", count=1)
            if not entries:
                read = self.redis.xreadgroup(GROUP, worker, {self.queue: ">"}, count=1)
                entries = read[0][1] if read else []
            if not entries:
                return None
            stream_id, fields = entries[0]
            job_id = fields[b"job_id"].decode()
            key = self._job_key(job_id)
            h = self.redis.hgetall(key)
            if not h or h[b"state"].decode() not in ("queued", "running"):
                self.redis.xack(self.queue, GROUP, stream_id)  # cancelled (or gone): nothing to do
                continue
            with self.redis.pipeline() as pipe:
                pipe.hset(key, mapping={"state": "running", "worker": worker, "frames_done": 0,
                                        "stream_id": stream_id})
                pipe.hincrby(key, "attempts", 1)
                _, attempts = pipe.execute()
            job = self._job(job_id, {**h, b"state": b"running", b"attempts": str(attempts).encode()})
            return ClaimedJob(job, unseal(self.aead, h[b"photo"], job_id), attempts)

    def _stream_id(self, job_id: str) -> str:
        return (self.redis.hget(self._job_key(job_id), "stream_id") or b"0-0").decode()

    def report(self, job_id: str, worker: str, attempt: int, frames_done: int, frame_count: int) -> bool:
        held = self._if_held(keys=[self._job_key(job_id)],
                             args=[worker, attempt, "frames_done", frames_done, "frame_count", frame_count])
        if held:  # renew the lease: reset the entry's idle time
            self.redis.xclaim(self.queue, GROUP, worker, 0, [self._stream_id(job_id)], justid=True)
        return bool(held)

    def finish(self, job_id: str, worker: str, attempt: int, result: bytes, frames: int, seconds: float) -> bool:
        now = time.time()
        tenant = (self.redis.hget(self._job_key(job_id), "tenant") or b"").decode()
        done = self._finish(
            keys=[self._job_key(job_id), self._result_key(job_id), self._active_key(tenant), self.queue],
            args=[worker, attempt, seal(self.aead, result, job_id), int(self.result_ttl_s * 1000), now,
                  now + self.result_ttl_s, frames, self._stream_id(job_id), job_id],
        )
        if done:
            self._expire_record(job_id)
            if seconds > 0:
                self._record_throughput(frames / seconds)
        return bool(done)

    def fail(self, job_id: str, worker: str, attempt: int, reason: str, detail: str) -> None:
        now = time.time()
        if self._if_held(keys=[self._job_key(job_id)], args=[
            worker, attempt, "state", "failed", "failure_reason", reason, "failure_detail", detail,
            "finished_s", now, "expires_s", now + self.result_ttl_s,
        ]):
            self._end(job_id)

    def release(self, job_id: str, worker: str, attempt: int) -> None:
        """Back to the queue now (a clean shutdown), as a fresh entry."""
        old = self._stream_id(job_id)
        if self._if_held(keys=[self._job_key(job_id)], args=[worker, attempt, "state", "queued", "worker", ""]):
            self.redis.xack(self.queue, GROUP, old)
            self.redis.hset(self._job_key(job_id), "stream_id", self.redis.xadd(self.queue, {"job_id": job_id}))

    def _end(self, job_id: str) -> None:
        tenant = (self.redis.hget(self._job_key(job_id), "tenant") or b"").decode()
        with self.redis.pipeline() as pipe:
            pipe.hdel(self._job_key(job_id), "photo")
            pipe.srem(self._active_key(tenant), job_id)
            pipe.xack(self.queue, GROUP, self._stream_id(job_id))
            pipe.execute()
        self._expire_record(job_id)

    def _expire_record(self, job_id: str) -> None:
        self.redis.pexpire(self._job_key(job_id), int(self.result_ttl_s * 1000 * RECORD_TTL_FACTOR))

    def _record_throughput(self, fps: float) -> None:
        previous = self.throughput_fps()
        value = fps if previous is None else previous + THROUGHPUT_SMOOTHING * (fps - previous)
        self.redis.set(self.prefix + "fps", value)

    def throughput_fps(self) -> float | None:
        value = self.redis.get(self.prefix + "fps")
        return float(value) if value is not None else None

    def expire(self, now: float | None = None) -> int:
        """Redis deletes results itself (key expiry); nothing to sweep."""
        return 0
