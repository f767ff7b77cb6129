"""Event (asynchronous) invocations: the durable queue survives a crash of the
server, failures are retried with backoff and then kept in the failed list,
and events for deleted functions."""
import datetime
import json
import time
import uuid

import pytest

from fn_util import (NODE_ECHO, deploy_node, error_code, failed_events, fn_client, fn_logs,
                     fn_server, metric, ok, poll_until)

ISO_MS = "%Y-%m-%dT%H:%M:%S.%fZ"


@pytest.fixture(scope="module")
def srv():
    with fn_server("--event-retry-base-ms", "100") as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return fn_client(srv)


def send_event(lam, name, event):
    r = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(event).encode())
    assert r["StatusCode"] == 202, r
    return r


def failed_for(server, name, marker):
    return [e for e in failed_events(server, name)["FailedEvents"] if marker in e["Payload"]]


def parse_time(s):
    return datetime.datetime.strptime(s, ISO_MS)


# ---- the queue survives a crash ---------------------------------------------------------------

SLOW_MARKER_NODE = """
exports.handler = async (event) => {
  console.log('began ' + event.marker);
  await new Promise((r) => setTimeout(r, event.sleep_ms));
  console.log('finished ' + event.marker);
  return event.marker;
};
"""


def test_events_queued_before_a_crash_run_after_restart(tmp_path):
    data_dir = str(tmp_path / "data")
    markers = [f"m{i}-{uuid.uuid4().hex[:8]}" for i in range(4)]
    with fn_server("--event-retry-base-ms", "100", data_dir=data_dir) as first:
        lam = fn_client(first)
        deploy_node(lam, "durable", SLOW_MARKER_NODE, Timeout=10)
        for m in markers:
            send_event(lam, "durable", {"marker": m, "sleep_ms": 2000})
        # The handler takes 2 s: nothing has finished when the server dies.
        log = fn_logs(first, "durable")
        assert not all(f"finished {m}" in log for m in markers), log
        lam.close()
        first.kill()

    with fn_server("--event-retry-base-ms", "100", data_dir=data_dir) as second:
        def all_finished():
            log = fn_logs(second, "durable")
            return all(f"finished {m}" in log for m in markers) and log

        log = poll_until(all_finished, 30, what="every queued event to run after the restart")
        for m in markers:
            assert f"finished {m}" in log
        state = poll_until(lambda: (lambda f: f["Pending"] == 0 and f)(
            failed_events(second, "durable")), 10, what="the queue to drain")
        assert state["FailedEvents"] == [], state


# ---- retries and the failed list ---------------------------------------------------------------

FAILING_NODE = """
exports.handler = async (event) => {
  console.log('attempt ' + event.marker + ' at ' + Date.now());
  throw new Error('always fails: ' + event.marker);
};
"""


def test_failing_event_is_retried_then_kept_as_failed(srv, lam):
    deploy_node(lam, "fails", FAILING_NODE)
    marker = uuid.uuid4().hex
    event = {"marker": marker}
    t0 = time.time()
    send_event(lam, "fails", event)
    [entry] = poll_until(lambda: failed_for(srv, "fails", marker), 20,
                         what="the event to be recorded as failed")
    assert entry["FunctionName"] == "fails", entry
    assert entry["Qualifier"] in ("", None, "$LATEST"), entry
    assert json.loads(entry["Payload"]) == event, entry
    assert entry["Attempts"] == 3, entry  # the first run and --event-retries 2
    assert entry["ErrorType"] == "Error", entry
    assert f"always fails: {marker}" in entry["ErrorMessage"], entry
    assert isinstance(entry["Id"], int), entry
    enq, failed = parse_time(entry["EnqueuedAt"]), parse_time(entry["FailedAt"])
    assert enq <= failed, entry
    assert abs(enq.replace(tzinfo=datetime.timezone.utc).timestamp() - t0) < 5, entry
    # Three attempts ran, the retries after 100 ms and then 200 ms (doubling).
    log = fn_logs(srv, "fails")
    stamps = [int(line.rsplit(" at ", 1)[1]) for line in log.splitlines()
              if f"attempt {marker} at " in line]
    assert len(stamps) == 3, log
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps[0] >= 90 and gaps[1] >= 190, gaps
    assert gaps[1] > gaps[0], gaps
    assert failed_events(srv, "fails")["Pending"] == 0


def test_event_that_times_out_is_retried_then_kept_as_failed(srv, lam):
    deploy_node(lam, "event-timeout", SLOW_MARKER_NODE, Timeout=1)
    marker = uuid.uuid4().hex
    send_event(lam, "event-timeout", {"marker": marker, "sleep_ms": 5000})
    [entry] = poll_until(lambda: failed_for(srv, "event-timeout", marker), 20,
                         what="the timed-out event to be recorded as failed")
    assert entry["Attempts"] == 3, entry
    assert entry["ErrorType"] == "Sandbox.Timedout", entry
    assert "Task timed out after 1.00 seconds" in entry["ErrorMessage"], entry
    assert fn_logs(srv, "event-timeout").count(f"began {marker}") == 3


def test_event_that_fails_once_succeeds_on_retry(srv, lam):
    deploy_node(lam, "flaky", """
let runs = 0;
exports.handler = async (event) => {
  runs += 1;
  console.log('flaky run ' + runs + ' ' + event.marker);
  if (runs === 1) throw new Error('first run fails');
  console.log('flaky succeeded ' + event.marker);
  return 'ok';
};""")
    marker = uuid.uuid4().hex
    send_event(lam, "flaky", {"marker": marker})
    poll_until(lambda: f"flaky succeeded {marker}" in fn_logs(srv, "flaky"), 15,
               what="the retry to succeed")
    poll_until(lambda: failed_events(srv, "flaky")["Pending"] == 0, 10, what="the queue to drain")
    assert failed_for(srv, "flaky", marker) == []
    log = fn_logs(srv, "flaky")
    assert log.count(marker) == 3, log  # run 1, run 2, succeeded (run 2)


def test_events_on_a_busy_function_all_run(srv, lam):
    """More events than the function may run at once (reserved concurrency 1):
    they wait their turn (a throttle is not a failure) and each runs once."""
    deploy_node(lam, "one-at-a-time", SLOW_MARKER_NODE)
    lam.put_function_concurrency(FunctionName="one-at-a-time", ReservedConcurrentExecutions=1)
    markers = [uuid.uuid4().hex[:12] for _ in range(4)]
    for m in markers:
        send_event(lam, "one-at-a-time", {"marker": m, "sleep_ms": 100})
    poll_until(lambda: all(f"finished {m}" in fn_logs(srv, "one-at-a-time") for m in markers),
               20, what="every event to run")
    log = fn_logs(srv, "one-at-a-time")
    for m in markers:
        assert log.count(f"began {m}") == 1, (m, log)
    assert failed_events(srv, "one-at-a-time")["FailedEvents"] == []


# ---- deleted functions ------------------------------------------------------------------------


def test_event_for_a_deleted_function_is_refused(lam):
    deploy_node(lam, "gone", NODE_ECHO)
    ok(lam, "gone", {})
    lam.delete_function(FunctionName="gone")
    code, status, resp = error_code(lam.invoke, FunctionName="gone", InvocationType="Event",
                                    Payload=b"{}")
    assert (code, status) == ("ResourceNotFoundException", 404), resp


def test_events_waiting_for_a_deleted_function_do_not_stay_queued(srv, lam):
    deploy_node(lam, "witness", NODE_ECHO)
    deploy_node(lam, "deleted-later", SLOW_MARKER_NODE)
    lam.put_function_concurrency(FunctionName="deleted-later", ReservedConcurrentExecutions=1)
    for i in range(3):
        send_event(lam, "deleted-later", {"marker": f"w{i}", "sleep_ms": 500})
    assert failed_events(srv, "deleted-later")["Pending"] >= 1
    assert metric(srv, "realm_event_queue_pending") >= 1
    # Pending is the function's own: another function's events are not counted.
    assert failed_events(srv, "witness")["Pending"] == 0
    lam.delete_function(FunctionName="deleted-later")
    poll_until(lambda: metric(srv, "realm_event_queue_pending") == 0, 15,
               what="the deleted function's events to leave the queue")
    # The queue still serves other functions.
    marker = uuid.uuid4().hex
    send_event(lam, "witness", {"marker": marker})
    poll_until(lambda: marker in fn_logs(srv, "witness"), 10, what="a later event to run")
