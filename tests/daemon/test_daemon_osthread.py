import threading

from pivoice.osthread import name_this_thread


def comm_of(native_id: int) -> str:
    with open(f"/proc/self/task/{native_id}/comm") as f:
        return f.read().strip()


def test_a_named_thread_shows_its_name_to_the_kernel_and_threads_it_starts_inherit_it():
    seen = {}

    def child():
        seen["child"] = comm_of(threading.get_native_id())

    def worker():
        name_this_thread("speaker-with-a-long-name")
        seen["worker"] = comm_of(threading.get_native_id())
        inner = threading.Thread(target=child)
        inner.start()
        inner.join()

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["worker"] == "pv-speaker-with"        # the kernel keeps 15 bytes
    # a thread started from a named one inherits the name until it names itself: why every
    # long-lived thread of the daemon names itself first thing
    assert seen["child"] == "pv-speaker-with"
