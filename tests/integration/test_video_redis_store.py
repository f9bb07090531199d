"""The video-job store on Redis Streams (a real redis-server): the embedded store's contract."""

import base64
import time

import pytest
from redis_server import redis_server

from facefuse.errors import FacefuseError, Reason
from facefuse.jobs.redis_store import RedisJobStore
from facefuse.jobs.store import JobNotFound, JobState

KEY = base64.b64decode(base64.b64encode(b"k" * 32))
PHOTO = b"\xff\xd8\xff" + b"a selfie nobody else may read" * 10
VIDEO = b"\x00\x00\x00\x18ftypisom" + b"fused frames" * 100


@pytest.fixture
def server(tmp_path):
    with redis_server(tmp_path / "redis") as (url, port):
        yield url, port, tmp_path / "redis"


def _store(url, **overrides):
    values = dict(result_ttl_s=3600, lease_s=30)
    values.update(overrides)
    return RedisJobStore(url, KEY, **values)


def _submit(store, tenant="tenant-a", frames=100):
    return store.submit(tenant, "talking-head", "{}", PHOTO, frames, max_queued_per_tenant=5)


def test_only_the_submitting_tenant_can_see_cancel_or_read_a_job(server):
    store = _store(server[0])
    job = _submit(store)
    claimed = store.claim("w1")
    assert claimed.photo == PHOTO
    assert store.finish(job.job_id, "w1", claimed.attempt, VIDEO, 100, 2.0)
    assert store.result(job.job_id, "tenant-a") == VIDEO
    for call in (store.get, store.cancel, store.result):
        with pytest.raises(JobNotFound):
            call(job.job_id, "tenant-b")


def test_queue_position_and_eta_follow_the_stream(server):
    store = _store(server[0])
    first, second, third = _submit(store), _submit(store, "tenant-b"), _submit(store)
    assert [store.get(j.job_id, t).queue_position for j, t in
            ((first, "tenant-a"), (second, "tenant-b"), (third, "tenant-a"))] == [0, 1, 2]
    store.cancel(second.job_id, "tenant-b")
    assert store.get(third.job_id, "tenant-a").queue_position == 1  # a cancelled job is not ahead
    claimed = store.claim("w1")
    assert claimed.job.job_id == first.job_id
    assert store.get(third.job_id, "tenant-a").queue_position == 0
    store.finish(first.job_id, "w1", claimed.attempt, VIDEO, 100, 10.0)
    assert store.get(third.job_id, "tenant-a").eta_s == pytest.approx(10.0)


def test_a_job_whose_worker_stopped_reporting_is_taken_over_and_published_once(server):
    store = _store(server[0], lease_s=1.0)
    job = _submit(store)
    stalled = store.claim("w1")
    assert store.claim("w2") is None  # leased to w1 (a second: ample on a busy machine)
    time.sleep(1.1)
    taken = store.claim("w2")
    assert taken.job.job_id == job.job_id and taken.attempt == stalled.attempt + 1
    assert not store.report(job.job_id, "w1", stalled.attempt, 10, 100)
    assert not store.finish(job.job_id, "w1", stalled.attempt, b"stale", 100, 1.0)
    assert store.report(job.job_id, "w2", taken.attempt, 10, 100)
    assert store.finish(job.job_id, "w2", taken.attempt, VIDEO, 100, 1.0)
    assert store.result(job.job_id, "tenant-a") == VIDEO
    assert store.claim("w3") is None  # acknowledged: nobody runs it again


def test_cancelled_and_released_jobs(server):
    store = _store(server[0])
    job = _submit(store)
    claimed = store.claim("w1")
    store.release(job.job_id, "w1", claimed.attempt)
    assert store.get(job.job_id, "tenant-a").state is JobState.QUEUED
    again = store.claim("w2")
    assert again.job.job_id == job.job_id
    assert store.cancel(job.job_id, "tenant-a").state is JobState.CANCELLED
    assert not store.report(job.job_id, "w2", again.attempt, 8, 100)
    queued_then_cancelled = _submit(store)
    store.cancel(queued_then_cancelled.job_id, "tenant-a")
    assert store.claim("w3") is None  # its entry is skipped


def test_failed_jobs_keep_the_stable_reason_and_free_the_tenants_slot(server):
    store = _store(server[0])
    for _ in range(5):
        _submit(store)
    with pytest.raises(FacefuseError) as caught:
        _submit(store)
    assert caught.value.reason is Reason.RATE_LIMITED
    claimed = store.claim("w1")
    store.fail(claimed.job.job_id, "w1", claimed.attempt, "NO_FACE_DETECTED", "no face")
    failed = store.get(claimed.job.job_id, "tenant-a")
    assert failed.state is JobState.FAILED and failed.failure_reason == "NO_FACE_DETECTED"
    _submit(store)  # a slot is free again


def test_photos_and_results_are_encrypted_in_redis_and_results_expire(server):
    url, _, directory = server
    store = _store(url, result_ttl_s=0.5)
    job = _submit(store)
    claimed = store.claim("w1")
    store.finish(job.job_id, "w1", claimed.attempt, VIDEO, 100, 1.0)
    on_disk = b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())
    assert b"a selfie nobody else may read" not in on_disk and b"fused frames" not in on_disk
    assert store.redis.hget(store._job_key(job.job_id), "photo") is None  # gone with the job's end
    time.sleep(0.7)
    assert store.get(job.job_id, "tenant-a").state is JobState.EXPIRED
    assert store.redis.get(store._result_key(job.job_id)) is None  # deleted by Redis
    with pytest.raises(FacefuseError):
        store.result(job.job_id, "tenant-a")


def test_jobs_survive_a_redis_restart(tmp_path):
    with redis_server(tmp_path / "redis") as (url, port):
        job = _submit(_store(url))
    with redis_server(tmp_path / "redis", port) as (url, _):
        store = _store(url)
        assert store.get(job.job_id, "tenant-a").state is JobState.QUEUED
        assert store.claim("w1").photo == PHOTO
