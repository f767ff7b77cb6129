"""A flood of Event invocations to a function with reserved concurrency 0
(issue 13): every request is answered 202 or 429 (the function's event queue
is bounded), health answers in under a second during and after the flood,
and after a SIGKILL the server restarts on the same data dir with the backlog
in under 5 seconds and still runs functions; once the reserved concurrency is
removed, the parked events run.

The flood goes over keep-alive connections (http.client, a few threads,
unsigned requests: the server runs without --auth)."""
import http.client
import json
import threading
import time

from fn_util import (NODE_ECHO, deploy_node, fn_client, fn_logs, fn_server, ok,
                     metric, poll_until)

FLOOD = 6000        # Event invocations sent
QUEUE_MAX = 4000    # --event-queue-max-per-function: the rest are refused with 429
SENDERS = 4         # threads, one keep-alive connection each
HEALTH_MAX_S = 1.0  # the slowest health answer allowed
FLAGS = ("--event-queue-max-per-function", str(QUEUE_MAX),
         # Few environments at once: once unparked, the backlog runs two at a time.
         "--concurrency-limit", "2")
INVOKE_PATH = "/2015-03-31/functions/flood/invocations"


class HealthProbe:
    """GET /health on the metrics port in a loop (a new connection each time,
    as a liveness probe does), keeping the slowest answer and any failure."""

    def __init__(self, server):
        self.port = server.ports["metrics"]
        self.times = []
        self.failures = []
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def once(self):
        t0 = time.monotonic()
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            c.request("GET", "/health")
            r = c.getresponse()
            r.read()
            c.close()
            if r.status != 200:
                self.failures.append(f"status {r.status}")
        except OSError as e:
            self.failures.append(repr(e))
        self.times.append(time.monotonic() - t0)

    def _run(self):
        while not self._stop.is_set():
            self.once()
            self._stop.wait(0.05)  # pacing between probes, not synchronisation

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(timeout=30)

    @property
    def worst(self):
        return max(self.times) if self.times else None


def send_events(port, count, first, statuses, errors):
    """count Event invocations over one keep-alive connection; statuses gets
    each answer's status (the connection is made anew only if the server
    closes it)."""
    c = None
    for i in range(first, first + count):
        body = json.dumps({"n": i, "pad": "x" * 1000}).encode()
        for attempt in range(2):
            try:
                if c is None:
                    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                c.request("POST", INVOKE_PATH, body=body,
                          headers={"X-Amz-Invocation-Type": "Event",
                                   "Content-Type": "application/json"})
                r = c.getresponse()
                data = r.read()
                statuses.append(r.status)
                if r.status == 429 and len(errors) < 1:
                    errors.append(("429", dict(r.getheaders()), data))
                if r.getheader("Connection", "").lower() == "close":
                    c.close()
                    c = None
                break
            except (OSError, http.client.HTTPException) as e:
                if c is not None:
                    c.close()
                c = None
                if attempt == 1:
                    errors.append(("error", i, repr(e)))
    if c is not None:
        c.close()


def flood(server, count):
    statuses, errors, threads = [], [], []
    per = count // SENDERS
    for k in range(SENDERS):
        t = threading.Thread(target=send_events,
                             args=(server.ports["control"], per, k * per, statuses, errors))
        threads.append(t)
        t.start()
    for t in threads:
        t.join(timeout=300)
    return statuses, errors


def pending(server):
    """Event invocations still queued, all functions."""
    return int(metric(server, "realm_event_queue_pending"))


def test_event_flood_to_reserved_zero_survives_and_restarts(tmp_path):
    data_dir = str(tmp_path / "data")
    with fn_server(*FLAGS, data_dir=data_dir) as first:
        lam = fn_client(first)
        deploy_node(lam, "flood", NODE_ECHO)
        deploy_node(lam, "witness", NODE_ECHO)
        lam.put_function_concurrency(FunctionName="flood", ReservedConcurrentExecutions=0)

        with HealthProbe(first) as during:
            t0 = time.monotonic()
            statuses, errors = flood(first, FLOOD)
            took = time.monotonic() - t0
        print(f"\n{FLOOD} Event invocations in {took:.1f} s; health during: "
              f"{len(during.times)} probes, slowest {during.worst * 1000:.0f} ms")

        assert not [e for e in errors if e[0] == "error"], errors[:5]
        assert len(statuses) == FLOOD, len(statuses)
        assert set(statuses) <= {202, 429}, sorted(set(statuses))
        assert statuses.count(202) == QUEUE_MAX, statuses.count(202)
        assert statuses.count(429) == FLOOD - QUEUE_MAX, statuses.count(429)
        [(_, headers, body)] = [e for e in errors if e[0] == "429"]
        assert headers.get("x-amzn-ErrorType") == "TooManyRequestsException", headers
        assert json.loads(body)["Reason"] == "EventQueueFull", body

        assert during.failures == [], during.failures[:5]
        assert during.worst < HEALTH_MAX_S, during.worst

        # After the flood: health is still quick, the events wait (parked), and
        # the server runs other functions.
        after = HealthProbe(first)
        for _ in range(10):
            after.once()
        assert after.failures == [] and after.worst < HEALTH_MAX_S, (after.failures, after.worst)
        assert pending(first) == QUEUE_MAX
        ok(lam, "witness", {"before": "crash"})
        assert "echo-node" not in fn_logs(first, "flood")  # reserved 0: nothing ran

        lam.close()
        first.kill()

    t0 = time.monotonic()
    with fn_server(*FLAGS, data_dir=data_dir) as second:
        probe = HealthProbe(second)
        poll_until(lambda: probe.once() or (probe.times and not probe.failures), 5,
                   what="health after the restart")
        up = time.monotonic() - t0
        print(f"restart with {QUEUE_MAX} queued events: health answered {up:.2f} s after spawn")
        assert up < 5, up

        with HealthProbe(second) as later:
            lam = fn_client(second)
            assert pending(second) == QUEUE_MAX  # nothing lost by the SIGKILL
            ok(lam, "witness", {"after": "restart"})
            # The function runs once its reserved concurrency is gone, and so do
            # its parked events.
            lam.delete_function_concurrency(FunctionName="flood")
            answer = ok(lam, "flood", {"direct": True})
            assert answer["event"] == {"direct": True}, answer
            poll_until(lambda: pending(second) <= QUEUE_MAX - 10, 60,
                       what="parked events to run once the function may run")
            assert '"pad"' in fn_logs(second, "flood")
        print(f"health after the restart: {len(later.times)} probes, slowest "
              f"{later.worst * 1000:.0f} ms")
        assert later.failures == [], later.failures[:5]
        assert later.worst < HEALTH_MAX_S, later.worst
        # Deleting the function drops the rest of its backlog.
        lam.delete_function(FunctionName="flood")
        poll_until(lambda: pending(second) == 0, 30, what="the backlog to go with its function")
