"""Durable video jobs: an embedded SQLite store, photos and results encrypted at rest.

One database file on one machine holds every job; gateways and workers on that machine
share it (SQLite's WAL mode lets readers and one writer work at once), and it survives
their restarts. Work is at-least-once: a worker holds a running job under a lease that
its progress reports renew; a job whose worker stopped reporting is taken over by the
next worker that asks. The result is idempotent: each attempt writes its own file, and
only the attempt that still holds the job when it finishes publishes its file, so a
job is never visibly done twice.

Privacy: the uploaded photo is stored encrypted and deleted when its job ends (done,
failed, cancelled); results are encrypted with AES-256-GCM (the job id as associated
data, so a file cannot be passed off as another job's) and deleted when they expire.
Only the tenant that submitted a job can see it; to anyone else it does not exist.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import os
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from facefuse.errors import FacefuseError, Reason
from facefuse.video.settings import VideoSettings

NONCE_BYTES = 12
KEY_FILE_NAME = "result.key"
# Jobs ids: 144 random bits, URL-safe; nothing about a job can be guessed from another.
JOB_ID_BYTES = 18
# How fast the measured throughput follows new jobs (exponential moving average).
THROUGHPUT_SMOOTHING = 0.3


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


TERMINAL = (JobState.DONE, JobState.FAILED, JobState.CANCELLED, JobState.EXPIRED)


class JobNotFound(FacefuseError):
    reason = Reason.JOB_NOT_FOUND


class JobNotDone(FacefuseError):
    """A result was asked of a job that has none (yet, or any more)."""

    reason = Reason.JOB_NOT_DONE


class SealBroken(FacefuseError):
    """Stored data that does not authenticate: changed on disk, or another job's."""

    reason = Reason.INTERNAL


@dataclass(frozen=True)
class Job:
    job_id: str
    tenant: str
    template_id: str
    options: str  # JSON of VideoOptions
    state: JobState
    created_s: float
    finished_s: float | None
    expires_s: float | None
    frames_done: int
    frame_count: int
    failure_reason: str
    failure_detail: str
    attempts: int
    queue_position: int | None = None
    eta_s: float | None = None

    @property
    def progress(self) -> float:
        return self.frames_done / self.frame_count if self.frame_count else 0.0


@dataclass(frozen=True)
class ClaimedJob:
    job: Job
    photo: bytes
    attempt: int


def new_job_id() -> str:
    return "vj_" + secrets.token_urlsafe(JOB_ID_BYTES)


def seal(aead: AESGCM, data: bytes, job_id: str) -> bytes:
    """AES-GCM with a fresh nonce; the job id is authenticated with the data."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + aead.encrypt(nonce, data, job_id.encode())


def unseal(aead: AESGCM, sealed: bytes, job_id: str) -> bytes:
    try:
        return aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], job_id.encode())
    except InvalidTag:
        raise SealBroken(f"the stored data of video job {job_id} does not authenticate: it was changed where it is "
                         "stored, or it is another job's; it is not served") from None


def load_key(key_b64: str | None, jobs_dir: Path) -> bytes:
    """The AES-256 key: from settings, else generated once into jobs_dir (mode 0600)."""
    if key_b64:
        key = base64.b64decode(key_b64)
        if len(key) != 32:
            raise ValueError(f"FACEFUSE_VIDEO_RESULT_KEY_B64 holds {len(key)} bytes; it must be 32 (AES-256)")
        return key
    path = jobs_dir / KEY_FILE_NAME
    if not path.is_file():
        jobs_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = jobs_dir / f".{KEY_FILE_NAME}.{secrets.token_hex(8)}"
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")
        try:
            os.link(staging, path)  # whole or not at all; of two gateways starting at once, one key wins
        except FileExistsError:
            pass
        finally:
            os.unlink(staging)
    return base64.b64decode(path.read_text().strip())


_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT UNIQUE NOT NULL,
    tenant TEXT NOT NULL,
    template_id TEXT NOT NULL,
    options TEXT NOT NULL,
    state TEXT NOT NULL,
    photo BLOB,
    created_s REAL NOT NULL,
    finished_s REAL,
    expires_s REAL,
    frames_done INTEGER NOT NULL DEFAULT 0,
    frame_count INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT NOT NULL DEFAULT '',
    failure_detail TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until_s REAL,
    result_file TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, seq);
CREATE TABLE IF NOT EXISTS meter (name TEXT PRIMARY KEY, value REAL NOT NULL);
"""
_COLUMNS = ("job_id, tenant, template_id, options, state, created_s, finished_s, expires_s, frames_done, "
            "frame_count, failure_reason, failure_detail, attempts")



def _job(row) -> Job:
    """A Job from a row of _COLUMNS."""
    return Job(*row[:4], JobState(row[4]), *row[5:])


class JobStore:
    def __init__(self, jobs_dir: Path, key: bytes, result_ttl_s: float, lease_s: float):
        self.dir = Path(jobs_dir)
        self.results_dir = self.dir / "results"
        # Job ids, tenants and templates are in the database: readable by this user only,
        # like the other state. SQLite gives the -wal and -shm files the database's mode.
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.results_dir.mkdir(mode=0o700, exist_ok=True)
        database = self.dir / "jobs.sqlite3"
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
        for path in (database, *(self.dir / f"jobs.sqlite3{suffix}" for suffix in ("-wal", "-shm"))):
            with contextlib.suppress(FileNotFoundError):
                path.chmod(0o600)  # a store made before this was 0644
        self.aead = AESGCM(key)
        self.result_ttl_s = result_ttl_s
        self.lease_s = lease_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(database, check_same_thread=False, isolation_level=None, timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # an accepted job is on disk before the caller hears of it
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        # Under the lock: closing SQLite while another thread runs a statement on the same
        # connection crashes the process (a gateway stopping while a call's thread reads).
        # Calls after it raise sqlite3.ProgrammingError.
        with self._lock:
            self._db.close()

    # ---- encryption ------------------------------------------------------------------
    def _seal(self, data: bytes, job_id: str) -> bytes:
        return seal(self.aead, data, job_id)

    def _open(self, sealed: bytes, job_id: str) -> bytes:
        return unseal(self.aead, sealed, job_id)

    # ---- callers' side ---------------------------------------------------------------
    def _rows(self, sql: str, args=()) -> list[tuple]:
        """Every row, read under the lock (a cursor read after it could race close())."""
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _row(self, sql: str, args=()) -> tuple | None:
        rows = self._rows(sql, args)
        return rows[0] if rows else None

    def _write(self, sql: str, args=()) -> int:
        """The rows the statement changed."""
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def submit(self, tenant: str, template_id: str, options_json: str, photo: bytes, frame_count: int,
               max_queued_per_tenant: int) -> Job:
        job_id = new_job_id()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (queued,) = self._db.execute(
                    "SELECT COUNT(*) FROM jobs WHERE tenant = ? AND state IN ('queued', 'running')", (tenant,)
                ).fetchone()
                if queued >= max_queued_per_tenant:
                    raise FacefuseError(
                        f"{queued} video jobs of this tenant are queued or running; at most {max_queued_per_tenant}",
                        Reason.RATE_LIMITED,
                    )
                self._db.execute(
                    "INSERT INTO jobs (job_id, tenant, template_id, options, state, photo, created_s, frame_count) "
                    "VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)",
                    (job_id, tenant, template_id, options_json, self._seal(photo, job_id), time.time(), frame_count),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(job_id, tenant)

    def get(self, job_id: str, tenant: str) -> Job:
        """The tenant's job with its queue position and ETA; JobNotFound for anyone else's."""
        self.expire()
        row = self._row(f"SELECT seq, {_COLUMNS} FROM jobs WHERE job_id = ? AND tenant = ?", (job_id, tenant))
        if row is None:
            raise JobNotFound(f"no video job {job_id!r} for this caller (unknown, or another tenant's)")
        seq, job = row[0], _job(row[1:])
        position = None
        frames_ahead = job.frame_count - job.frames_done
        if job.state is JobState.QUEUED:
            position, ahead = self._row(
                "SELECT COUNT(*), COALESCE(SUM(frame_count), 0) FROM jobs WHERE state = 'queued' AND seq < ?", (seq,)
            )
            (running,) = self._row(
                "SELECT COALESCE(SUM(frame_count - frames_done), 0) FROM jobs WHERE state = 'running'"
            )
            frames_ahead += ahead + running
        eta = None
        fps = self.throughput_fps()
        if job.state in (JobState.QUEUED, JobState.RUNNING) and fps:
            eta = frames_ahead / fps
        return Job(**{**job.__dict__, "queue_position": position, "eta_s": eta})

    def cancel(self, job_id: str, tenant: str) -> Job:
        """Queued or running jobs stop (a running one at its worker's next report); the
        photo goes at once. Finished jobs are left as they are."""
        self.get(job_id, tenant)
        self._write(
            "UPDATE jobs SET state = 'cancelled', photo = NULL, finished_s = ?, expires_s = ? "
            "WHERE job_id = ? AND tenant = ? AND state IN ('queued', 'running')",
            (time.time(), time.time() + self.result_ttl_s, job_id, tenant),
        )
        return self.get(job_id, tenant)

    def result(self, job_id: str, tenant: str) -> bytes:
        job = self.get(job_id, tenant)
        if job.state is not JobState.DONE:
            raise JobNotDone(f"video job {job_id} is {job.state.value}, not done: no result to read; "
                             "read it once GetVideoJob says done")
        (name,) = self._row("SELECT result_file FROM jobs WHERE job_id = ?", (job_id,))
        return self._open((self.results_dir / name).read_bytes(), job_id)

    # ---- workers' side ---------------------------------------------------------------
    def claim(self, worker: str) -> ClaimedJob | None:
        """The oldest queued job, or a running one whose lease ran out (its worker died)."""
        now = time.time()
        # Workers poll: look first with a plain read (WAL readers never wait), and take
        # the write lock only when there is something to take.
        candidate = "SELECT job_id FROM jobs WHERE state = 'queued' OR (state = 'running' AND lease_until_s < ?) " \
                    "ORDER BY seq LIMIT 1"
        if self._row(candidate, (now,)) is None:
            return None
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(candidate, (now,)).fetchone()
                if row is None:
                    self._db.execute("COMMIT")
                    return None
                self._db.execute(
                    "UPDATE jobs SET state = 'running', worker = ?, lease_until_s = ?, attempts = attempts + 1, "
                    "frames_done = 0 WHERE job_id = ?", (worker, now + self.lease_s, row[0]),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            photo_row = self._db.execute(f"SELECT photo, {_COLUMNS} FROM jobs WHERE job_id = ?", (row[0],)).fetchone()
        job = _job(photo_row[1:])
        return ClaimedJob(job, self._open(photo_row[0], job.job_id), job.attempts)

    def report(self, job_id: str, worker: str, attempt: int, frames_done: int, frame_count: int) -> bool:
        """Progress, renewing the lease. False: the job is no longer this attempt's
        (cancelled, or taken over after a missed lease): stop working on it."""
        changed = self._write(
            "UPDATE jobs SET frames_done = ?, frame_count = ?, lease_until_s = ? "
            "WHERE job_id = ? AND state = 'running' AND worker = ? AND attempts = ?",
            (frames_done, frame_count, time.time() + self.lease_s, job_id, worker, attempt),
        )
        return changed == 1

    def finish(self, job_id: str, worker: str, attempt: int, result: bytes, frames: int, seconds: float) -> bool:
        """Publish this attempt's result (encrypted); False if the job is no longer ours."""
        name = f"{job_id}.{attempt}.mp4.enc"
        path = self.results_dir / name
        staging = path.with_suffix(".tmp")
        with os.fdopen(os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as handle:
            handle.write(self._seal(result, job_id))
        os.replace(staging, path)
        now = time.time()
        changed = self._write(
            "UPDATE jobs SET state = 'done', photo = NULL, result_file = ?, finished_s = ?, expires_s = ?, "
            "frames_done = ?, frame_count = ? WHERE job_id = ? AND state = 'running' AND worker = ? AND attempts = ?",
            (name, now, now + self.result_ttl_s, frames, frames, job_id, worker, attempt),
        )
        if changed != 1:
            path.unlink(missing_ok=True)
            return False
        if seconds > 0:
            self._record_throughput(frames / seconds)
        return True

    def release(self, job_id: str, worker: str, attempt: int) -> None:
        """Back to the queue (a worker shutting down cleanly), for the next worker now
        rather than after the lease."""
        self._write(
            "UPDATE jobs SET state = 'queued', worker = NULL, lease_until_s = NULL, frames_done = 0 "
            "WHERE job_id = ? AND state = 'running' AND worker = ? AND attempts = ?", (job_id, worker, attempt),
        )

    def fail(self, job_id: str, worker: str, attempt: int, reason: str, detail: str) -> None:
        now = time.time()
        self._write(
            "UPDATE jobs SET state = 'failed', photo = NULL, failure_reason = ?, failure_detail = ?, finished_s = ?, "
            "expires_s = ? WHERE job_id = ? AND state = 'running' AND worker = ? AND attempts = ?",
            (reason, detail, now, now + self.result_ttl_s, job_id, worker, attempt),
        )

    def _record_throughput(self, fps: float) -> None:
        previous = self.throughput_fps()
        value = fps if previous is None else previous + THROUGHPUT_SMOOTHING * (fps - previous)
        self._write("INSERT INTO meter (name, value) VALUES ('fps', ?) "
                    "ON CONFLICT(name) DO UPDATE SET value = excluded.value", (value,))

    def throughput_fps(self) -> float | None:
        row = self._row("SELECT value FROM meter WHERE name = 'fps'")
        return row[0] if row else None

    def expire(self, now: float | None = None) -> int:
        """Finished jobs past their expiry: result file deleted, state 'expired'."""
        now = time.time() if now is None else now
        rows = self._rows(
            "SELECT job_id, result_file FROM jobs WHERE state IN ('done', 'failed', 'cancelled') AND expires_s < ?",
            (now,),
        )
        for job_id, name in rows:
            if name:
                (self.results_dir / name).unlink(missing_ok=True)
            self._write("UPDATE jobs SET state = 'expired', result_file = NULL, photo = NULL WHERE job_id = ?",
                          (job_id,))
        return len(rows)


def open_job_store(settings: VideoSettings) -> JobStore:
    """Redis Streams where settings.redis_url is set (many machines), else embedded SQLite."""
    if settings.redis_url and not settings.result_key_b64:
        raise ValueError("FACEFUSE_VIDEO_REDIS_URL needs FACEFUSE_VIDEO_RESULT_KEY_B64: every machine must hold "
                         "the same key to read the photos and results it shares")
    key = load_key(settings.result_key_b64.get_secret_value() if settings.result_key_b64 else None, settings.jobs_dir)
    if settings.redis_url:
        from facefuse.jobs.redis_store import RedisJobStore  # redis-py only where it is used

        return RedisJobStore(settings.redis_url, key, settings.result_ttl_s, settings.lease_s)
    return JobStore(settings.jobs_dir, key, settings.result_ttl_s, settings.lease_s)
