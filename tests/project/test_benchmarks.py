"""The benchmarks' workloads still do what the issue defines (results, not times).

`python -m benchmarks` times them; here each runs a little, and its result is
checked, so a change to the engine cannot quietly make a benchmark measure
something else.
"""

from __future__ import annotations

import msgpack

import genflow
from benchmarks import fan_out, w1_seed_loop, w2_long_running, w3_durable_steps, w4_batch
from genflow import dumps, loads, new_state, resume
from genflow.engine import Engine
from genflow.stores import SQLiteStore


def test_w1_every_driver_ends_as_the_plain_floor() -> None:
    floor = w1_seed_loop.run_plain()
    assert floor == {"i": 2, "log": "lllllhaha"}
    for driver in (w1_seed_loop.run_memory, w1_seed_loop.run_checkpointed,
                   w1_seed_loop.run_reloaded):
        wf = driver()
        assert (wf.i, wf.log) == (floor["i"], floor["log"])


def test_w1_moves_as_the_seed_counts_them() -> None:
    """19 engine moves (the Go library's "19 engine steps"): 8 steps, 11 forwards."""
    wf = w1_seed_loop.SeedLoop()
    state = new_state("w1", wf)
    kinds: list[str] = []
    resume(wf, state, kinds.append)
    for _ in range(2):
        w1_seed_loop.handle_callback(state.threads[0].events[0].req, wf, state)
        resume(wf, state, kinds.append)
    assert wf.log == "lllllhaha"
    assert len(kinds) == 19
    assert kinds.count("after_step") == 8


def test_w2_the_blob_does_not_grow_with_the_events() -> None:
    wf = w2_long_running.LongRunning()
    state = new_state("w2", wf)
    resume(wf, state)
    blob = dumps(wf, state)
    sizes = {}
    for k in range(1, 1001):
        blob = w2_long_running.one_event(blob)
        sizes[k] = len(blob)
    wf, _ = loads(blob)
    assert (wf.n, wf.total) == (1000, 1000 * 1001 // 2)
    # Only integers widen: n, total and three copies of the move counter, each
    # from msgpack's 1 byte to at most 5 (an event history would add >= 1000)
    widest = len(msgpack.packb(2**32 - 1)) - len(msgpack.packb(1))
    assert max(sizes.values()) <= sizes[1] + 5 * widest
    assert sizes[1000] == sizes[900]


def test_w3_one_save_per_step(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "w3.db")
    engine = Engine(store)
    samples, iid = w3_durable_steps.durable_step_us(engine, 2)
    assert len(samples) == 2
    record = store.get(iid)
    assert engine.get(iid).data.i == w3_durable_steps.STEPS
    # a save per step, plus the start and the end
    assert record.version <= w3_durable_steps.STEPS + 3
    store.close()


def test_w3_parts_do_what_a_step_does() -> None:
    """The parts `benchmarks.instructions` counts a W3 step's cost by: the
    statement rewrites the row once per step, the in-memory run takes the same
    100 steps, each of the 100 blobs is a W3 instance's."""
    w3 = w3_durable_steps
    w3.run_statement()
    iid, before = w3._STATEMENT[0]
    w3.run_statement()
    store = w3._SHARED[0].store
    assert store.get(iid).version == before.version + w3.STEPS
    assert store.get(iid).blob == before.blob
    assert w3.run_memory().i == w3.STEPS
    blobs = w3.run_dumps()
    assert len(blobs) == w3.STEPS and loads(blobs[-1])[0] == w3.HundredSteps()


def test_w3_least_save_writes_a_row_per_step_that_loads(tmp_path) -> None:
    """The bound W3 sets beside the engine's step: a save per durable step of
    the same instance's row, each blob the data as that step left it."""
    w3 = w3_durable_steps
    store = SQLiteStore(tmp_path / "w3.db")
    iid = Engine(store).start(w3.HundredSteps(), run=False)
    before = store.get(iid)
    least = w3.LeastSave(tmp_path / "w3.db", "NORMAL", iid)
    least.steps_us()
    least.steps_us()
    least.close()
    after = store.get(iid)
    assert after.version == before.version + 2 * w3.STEPS
    data, state = loads(after.blob)
    assert data == w3.HundredSteps(i=w3.STEPS) and state.id == iid
    assert (after.status, after.lease_owner) == (before.status, before.lease_owner)
    store.close()


def test_w4_every_instance_finishes() -> None:
    assert w4_batch._one_run(60, 1) > 0


def test_w3_in_a_try_runs_the_same_steps_and_its_finally(tmp_path) -> None:
    from benchmarks import w3_try

    store = SQLiteStore(tmp_path / "w3try.db")
    plain, wrapped = w3_try.compare(store, 1)
    assert len(plain) == len(wrapped) == 1
    engine = Engine(store)
    iid = engine.start(w3_try.HundredStepsInTry())
    data = engine.get(iid).data
    assert (data.i, data.closed) == (w3_durable_steps.STEPS, True)
    # a save per step and one for the Finally's step: the Try itself saves nothing
    assert store.get(iid).version <= w3_durable_steps.STEPS + 4
    store.close()


def test_mailbox_the_kept_and_the_direct_run_end_alike() -> None:
    from benchmarks import mailbox

    (direct, direct_state), (kept, kept_state) = mailbox.core_direct(), mailbox.core_kept()
    assert (direct.a, direct.b) == (kept.a, kept.b) == (1, 2)
    assert direct_state.status is kept_state.status is genflow.WorkflowStatus.FINISHED
    assert direct_state.mailbox is None  # nothing was kept: no mailbox at all
    assert kept_state.mailbox is not None and kept_state.mailbox.sent == 1
    assert kept_state.mailbox.kept == kept_state.mailbox.undelivered == []
    keep, deliver = mailbox.walk_us(20, 2)
    assert len(keep) == len(deliver) == 7


def test_the_three_approvals_of_the_waitfor_benchmark_end_approved_in_time() -> None:
    from benchmarks import waitfor_timeout as bench

    for case in (bench.plain, bench.timed, bench.as_wait):
        case()
    engine = bench._ENGINE[0]
    ended = sorted((r.workflow, r.status, engine.get(r.id).data.approved,
                    engine.get(r.id).data.escalated) for r in engine.store.list())
    assert ended == [("bench-waitfor", "finished", True, False),
                     ("bench-waitfor-as-wait", "finished", True, False),
                     ("bench-waitfor-timeout", "finished", True, False)]


def test_fan_out_backs_up_25_files_at_once_and_one_at_a_time() -> None:
    from examples.fan_out import STORAGE
    from genflow.stores import MemoryStore

    for parallel in (100, 1):
        fan_out.wall_ms(MemoryStore(), parallel)  # (checks the backup itself)
        assert STORAGE.peak == (25 if parallel > 1 else 1)


def test_w5_the_last_statement_and_the_last_thread_are_reached() -> None:
    from benchmarks import w5_scale

    for n in (10, 100):
        wf = w5_scale.one_event(w5_scale.waiting(w5_scale.Long(size=n)))
        assert isinstance(wf, w5_scale.Long) and wf.done == n
        blob = w5_scale.waiting(w5_scale.FanOut(threads=n))
        _, state = loads(blob)
        assert len(state.threads) == n
        wf = w5_scale.one_event(blob, n - 1)
        assert isinstance(wf, w5_scale.FanOut) and wf.done == 1


def test_result_wait_measures_a_finished_instance(tmp_path) -> None:
    from benchmarks import result_wait

    store = result_wait._Counting(tmp_path / "result.db")
    seconds, reads = result_wait.lag(Engine(store), store, 0.01)
    assert 0 <= seconds < 30 and reads >= 2  # (read while waiting, and once finished)
    store.close()
