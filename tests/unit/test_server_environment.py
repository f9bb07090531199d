from facefuse.server.triton import MALLOC_TUNABLES, OPENCV_THREADS, with_worker_tunables


def test_the_malloc_tunables_are_added_and_the_callers_own_come_last():
    assert with_worker_tunables({})["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    mine = "glibc.malloc.trim_threshold=0"
    env = with_worker_tunables({"GLIBC_TUNABLES": mine, "HOME": "/root"})
    assert env["GLIBC_TUNABLES"] == f"{MALLOC_TUNABLES}:{mine}" and env["HOME"] == "/root"


def test_opencv_runs_on_one_thread_unless_the_caller_chose_a_count():
    assert with_worker_tunables({})["OPENCV_FOR_THREADS_NUM"] == OPENCV_THREADS == "1"
    assert with_worker_tunables({"OPENCV_FOR_THREADS_NUM": "4"})["OPENCV_FOR_THREADS_NUM"] == "4"
