"""Realm on PostgreSQL under real failures (issue 16's acceptance):

- kill -9 of the server, then a NEW server with a fresh, empty data dir on
  the same database: every function, version, alias, tag and reservation
  reads back identically (boto3 and the AWS CLI), and every function runs
  its own code (the packages come back from PostgreSQL);
- Event invocations acknowledged (202) before a kill -9 run after the
  restart, at least once, none lost;
- PostgreSQL stopped (immediate: a crash) and started under load: no hang,
  clear errors meanwhile (503 ServiceException on the control API), warm
  invocations of cached functions keep running, and everything recovers
  without restarting Realm.

Each test has its own throwaway cluster (pg_cluster) and its own servers."""
import concurrent.futures
import json
import threading
import time
import uuid

import botocore.exceptions
import pytest

from conftest import Server, finish
from lambda_util import aws
from fn_util import (NODE_ECHO, deploy_node, failed_events, fn_client, fn_logs, ok,
                     poll_until)


GREETING_NODE = """
exports.handler = async (event) => ({greeting: %s, got: event});
"""


def greeting_src(text):
    return GREETING_NODE % json.dumps(text)


def pg_server(url, *flags, data_dir=None):
    return Server("--db", url, "--shutdown-grace-ms", "1000", *flags, data_dir=data_dir)


def snapshot(lam, names):
    """What the control API says about names, without the fields that name
    the server (none today) or change by themselves (LastUpdateStatus stays)."""
    out = {}
    for n in names:
        f = lam.get_function(FunctionName=n)
        f.pop("ResponseMetadata", None)
        f["Code"].pop("Location", None)  # the serving server's own URL
        versions = lam.list_versions_by_function(FunctionName=n)["Versions"]
        aliases = lam.list_aliases(FunctionName=n)["Aliases"]
        tags = lam.list_tags(Resource=f["Configuration"]["FunctionArn"])["Tags"]
        try:
            conc = lam.get_function_concurrency(FunctionName=n).get(
                "ReservedConcurrentExecutions")
        except botocore.exceptions.ClientError:
            conc = None
        out[n] = {"function": f, "versions": versions, "aliases": aliases, "tags": tags,
                  "concurrency": conc}
    return out


def aws_cli(server, *args):
    rc, out, err = aws(server, "lambda", *args)
    assert rc == 0, err
    return out


def test_kill9_then_a_fresh_data_dir_serves_everything(pg_cluster, tmp_path):
    url = pg_cluster.url
    names = ["alpha", "beta", "gamma"]
    first = pg_server(url, data_dir=str(tmp_path / "a"))
    try:
        lam = fn_client(first)
        for n in names:
            deploy_node(lam, n, greeting_src(f"v1 of {n}"))
        # beta: new code, published, an alias, tags, a reservation.
        from fn_util import build_zip, node_files
        lam.update_function_code(FunctionName="beta",
                                 ZipFile=build_zip(node_files(greeting_src("v2 of beta"))))
        lam.get_waiter("function_updated_v2").wait(FunctionName="beta")
        v = lam.publish_version(FunctionName="beta")["Version"]
        lam.create_alias(FunctionName="beta", Name="live", FunctionVersion=v)
        arn = lam.get_function(FunctionName="beta")["Configuration"]["FunctionArn"]
        lam.tag_resource(Resource=arn, Tags={"team": "core", "tier": "gold"})
        lam.put_function_concurrency(FunctionName="beta", ReservedConcurrentExecutions=3)
        # gamma through the AWS CLI, as a user would: a version and an alias.
        aws_cli(first, "publish-version", "--function-name", "gamma")
        aws_cli(first, "create-alias", "--function-name", "gamma", "--name", "prod",
                "--function-version", "1")
        before = snapshot(lam, names)
        assert ok(lam, "beta", {"x": 1})["greeting"] == "v2 of beta"
        lam.close()
        first.kill()
        assert first.proc.wait(timeout=30) == -9
    finally:
        finish(first)

    second = pg_server(url, data_dir=str(tmp_path / "b"))  # empty: nothing local
    try:
        assert not (tmp_path / "b" / "packages").exists() or \
            not any(p.suffix == ".zip" for p in (tmp_path / "b" / "packages").iterdir())
        lam = fn_client(second)
        after = snapshot(lam, names)
        assert after == before
        listed = sorted(f["FunctionName"] for f in lam.list_functions()["Functions"])
        assert listed == names
        cli = aws_cli(second, "get-alias", "--function-name", "gamma", "--name", "prod")
        assert cli["FunctionVersion"] == "1"
        # Each runs its own code, fetched from PostgreSQL into the new data dir.
        for n in names:
            want = "v2 of beta" if n == "beta" else f"v1 of {n}"
            assert ok(lam, n, {"n": n}) == {"greeting": want, "got": {"n": n}}
        assert ok(lam, "beta", {"q": 1}, Qualifier="live")["greeting"] == "v2 of beta"
        assert ok(lam, "beta", {"q": 1}, Qualifier="1")["greeting"] == "v2 of beta"
        lam.close()
    finally:
        second.stop()
        finish(second)


SLOW_MARKER_NODE = """
exports.handler = async (event) => {
  console.log('started ' + event.marker);
  await new Promise((r) => setTimeout(r, event.sleep_ms || 0));
  console.log('finished ' + event.marker);
  return event.marker;
};
"""


def test_events_acknowledged_before_kill9_run_after_restart(pg_cluster, tmp_path):
    url = pg_cluster.url
    # A short lease, so that the events the dead server had claimed come back
    # within the test (the default covers the longest function timeout).
    flags = ("--event-retry-base-ms", "100", "--event-lease-ms", "3000")
    markers = [f"m{i}-{uuid.uuid4().hex[:8]}" for i in range(12)]
    first = pg_server(url, *flags, data_dir=str(tmp_path / "a"))
    try:
        lam = fn_client(first)
        deploy_node(lam, "durable", SLOW_MARKER_NODE, Timeout=10)
        for m in markers:
            r = lam.invoke(FunctionName="durable", InvocationType="Event",
                           Payload=json.dumps({"marker": m, "sleep_ms": 2000}))
            assert r["StatusCode"] == 202
        lam.close()
        first.kill()
    finally:
        finish(first)

    second = pg_server(url, *flags, data_dir=str(tmp_path / "b"))
    try:
        def all_finished():
            log = fn_logs(second, "durable")
            return all(f"finished {m}" in log for m in markers) and log

        poll_until(all_finished, 60, what="every acknowledged event to run after the restart")
        state = poll_until(lambda: (lambda f: f["Pending"] == 0 and f)(
            failed_events(second, "durable")), 20, what="the queue to drain")
        assert state["FailedEvents"] == [], state
    finally:
        second.stop()
        finish(second)


def test_postgres_stopped_and_started_under_load(pg_cluster, tmp_path):
    pg = pg_cluster
    s = pg_server(pg.url, "--event-retry-base-ms", "100", data_dir=str(tmp_path / "a"))
    try:
        lam = fn_client(s, read_timeout=20)
        deploy_node(lam, "warm", NODE_ECHO)
        deploy_node(lam, "later", SLOW_MARKER_NODE, Timeout=10)
        assert ok(lam, "warm", {"i": 0})["event"] == {"i": 0}  # cached from now on

        stop = threading.Event()
        outcomes = {"warm_ok": 0, "warm_err": [], "ctl_ok": 0, "ctl_503": 0, "ctl_other": []}
        lock = threading.Lock()

        def warm_loop():
            c = fn_client(s, read_timeout=20)
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    assert ok(c, "warm", {"i": i})["event"] == {"i": i}
                    with lock:
                        outcomes["warm_ok"] += 1
                except Exception as e:  # noqa: BLE001 - recorded, asserted below
                    with lock:
                        outcomes["warm_err"].append(repr(e))

        def control_loop():
            c = fn_client(s, read_timeout=20)
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    c.list_functions()
                    with lock:
                        outcomes["ctl_ok"] += 1
                except botocore.exceptions.ClientError as e:
                    code = e.response["Error"]["Code"]
                    status = e.response["ResponseMetadata"]["HTTPStatusCode"]
                    with lock:
                        if code == "ServiceException" and status == 503:
                            outcomes["ctl_503"] += 1
                        else:
                            outcomes["ctl_other"].append((code, status))
                # No hang: every answer comes quickly, database or not.
                assert time.monotonic() - t0 < 15

        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            futs = [pool.submit(warm_loop), pool.submit(warm_loop), pool.submit(control_loop)]
            poll_until(lambda: outcomes["ctl_ok"] > 5 and outcomes["warm_ok"] > 5, 30,
                       what="load before the stop")
            pg.stop("immediate")
            ok_at_stop = outcomes["warm_ok"]
            poll_until(lambda: outcomes["ctl_503"] >= 3, 30,
                       what="503 ServiceException while PostgreSQL is down")
            # Warm invocations of the cached function kept running meanwhile.
            poll_until(lambda: outcomes["warm_ok"] > ok_at_stop + 5, 30,
                       what="warm invocations while PostgreSQL is down")
            # An Event cannot be acknowledged without the database: refused, not 202.
            with pytest.raises(botocore.exceptions.ClientError) as ei:
                lam.invoke(FunctionName="later", InvocationType="Event", Payload=b"{}")
            assert ei.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
            assert ei.value.response["Error"]["Code"] == "ServiceException"
            pg.start()
            ctl_at_start = outcomes["ctl_ok"]
            poll_until(lambda: outcomes["ctl_ok"] > ctl_at_start + 3, 60,
                       what="the control API to recover after PostgreSQL is back")
            stop.set()
            for f in futs:
                f.result()
        assert outcomes["warm_err"] == [], outcomes["warm_err"][:5]
        assert outcomes["ctl_other"] == [], outcomes["ctl_other"][:5]

        # Full recovery without a restart: writes, Events, new functions.
        marker = f"after-{uuid.uuid4().hex[:8]}"
        r = lam.invoke(FunctionName="later", InvocationType="Event",
                       Payload=json.dumps({"marker": marker}))
        assert r["StatusCode"] == 202
        poll_until(lambda: f"finished {marker}" in fn_logs(s, "later"), 30,
                   what="an Event acknowledged after the recovery to run")
        deploy_node(lam, "fresh", NODE_ECHO)
        assert ok(lam, "fresh", {"ok": True})["event"] == {"ok": True}
        lam.close()
    finally:
        s.stop()
        finish(s)
