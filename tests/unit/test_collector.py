"""app.core.collector: the cyclic collector is paused while any job holds it, and
left as it was found."""
import gc
import threading

from app.core import collector


def test_paused_while_held_and_resumed_by_the_last_holder():
    assert gc.isenabled()
    inner_done = threading.Event()
    with collector.paused():
        assert not gc.isenabled()

        def other_job():
            with collector.paused():
                assert not gc.isenabled()
            inner_done.set()
        thread = threading.Thread(target=other_job)
        thread.start()
        thread.join()
        assert inner_done.is_set()
        assert not gc.isenabled()  # the other job left first: still paused for this one
    assert gc.isenabled()


def test_a_collector_turned_off_elsewhere_stays_off():
    gc.disable()
    try:
        with collector.paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()
