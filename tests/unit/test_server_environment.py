from facefuse.server.triton import MALLOC_TUNABLES, with_malloc_tunables


def test_the_malloc_tunables_are_added_and_the_callers_own_come_last():
    assert with_malloc_tunables({})["GLIBC_TUNABLES"] == MALLOC_TUNABLES
    mine = "glibc.malloc.trim_threshold=0"
    env = with_malloc_tunables({"GLIBC_TUNABLES": mine, "HOME": "/root"})
    assert env["GLIBC_TUNABLES"] == f"{MALLOC_TUNABLES}:{mine}" and env["HOME"] == "/root"
