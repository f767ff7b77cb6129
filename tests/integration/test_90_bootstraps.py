"""Realm's own bootstraps (runtimes/node, runtimes/python) against the fake
runtime API of fake_runtime.py, for both languages, over the WebSocket
channel ("ws"), over HTTP (LAMBDA_USE_WEBSOCKET=false, "http"), and with
the WebSocket refused at the upgrade so the bootstrap falls back to HTTP
("fallback"). Each test starts one bootstrap process with a clean
environment and kills it at teardown; waits are on queues and conditions
with timeouts, never sleeps.
"""

import json
import os
import re
import subprocess
import textwrap
import time

import pytest

from conftest import Proc
from fake_runtime import FakeRuntime

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NODE_DIR = os.path.join(ROOT, "runtimes", "node")
PYTHON_DIR = os.path.join(ROOT, "runtimes", "python")
NODE_MODULES = os.path.join(ROOT, "node_modules")
LANGS = ["node", "python"]
MODES = ["ws", "http", "fallback"]
FALLBACK_LINE = "falling back to the HTTP runtime API"
TIMEOUT = 10

NODE_HANDLERS = {
    "handlers.js": """
        let count = 0;
        class ValidationError extends Error {
          constructor(message) { super(message); this.name = 'ValidationError'; }
        }
        exports.sync = (event) => ({ echo: event, kind: 'sync' });
        exports.asyncHandler = async (event) => {
          await new Promise((resolve) => setImmediate(resolve));
          return { echo: event, kind: 'async' };
        };
        exports.callback = (event, context, callback) => {
          setImmediate(() => callback(null, { echo: event, kind: 'callback' }));
        };
        exports.callbackError = (event, context, callback) => callback(new ValidationError('from callback'));
        exports.succeed = (event, context) => { context.succeed({ kind: 'succeed' }); };
        exports.noResult = (event) => { count += 0; };
        exports.counter = async () => ({ count: ++count, pid: process.pid });
        exports.context = async (event, context) => ({
          awsRequestId: context.awsRequestId,
          functionName: context.functionName,
          functionVersion: context.functionVersion,
          invokedFunctionArn: context.invokedFunctionArn,
          memoryLimitInMB: context.memoryLimitInMB,
          logGroupName: context.logGroupName,
          logStreamName: context.logStreamName,
          remaining: context.getRemainingTimeInMillis(),
          clientContext: context.clientContext,
          identity: context.identity,
          callbackWaitsForEmptyEventLoop: context.callbackWaitsForEmptyEventLoop,
          traceEnv: process.env._X_AMZN_TRACE_ID,
        });
        exports.throws = async () => { throw new ValidationError('bad thing'); };
        exports.log = async () => {
          console.log('hello %s', 'world');
          console.warn('careful');
          console.error('multi\\nline');
          return 'logged';
        };
        exports.waits = (event, context, callback) => {
          const state = { timerRan: false };
          if (event.noWait) context.callbackWaitsForEmptyEventLoop = false;
          setTimeout(() => { state.timerRan = true; }, 20);
          callback(null, state);
        };
        exports.uncaught = (event, context, callback) => {
          setImmediate(() => { throw new RangeError('thrown later'); });
        };
        exports.unserializable = async () => { const o = {}; o.self = o; return o; };
        exports.notAFunction = 42;
        exports.obj = { method: async () => 'nested attribute' };
        exports.stream = awslambda.streamifyResponse(async (event, stream) => {
          stream.setContentType('text/plain');
          for (const part of event.parts) stream.write(part);
          stream.end();
        });
        exports.gatedStream = awslambda.streamifyResponse(async (event, stream) => {
          stream.write('first');
          await new Promise((resolve, reject) => {
            require('http').get(event.gate, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
          });
          stream.write('second');
          stream.end();
        });
        exports.streamFails = awslambda.streamifyResponse(async (event, stream) => {
          await new Promise((resolve) => stream.write('partial', resolve));
          throw new ValidationError('mid-stream');
        });
        exports.streamFailsEarly = awslambda.streamifyResponse(async () => {
          throw new ValidationError('before any write');
        });
        exports.httpStream = awslambda.streamifyResponse(async (event, stream) => {
          stream = awslambda.HttpResponseStream.from(stream, { statusCode: 201, headers: { a: 'b' } });
          stream.write('body');
          stream.end();
        });
        """,
    "nested/dir/deep.js": """
        exports.handler = async (event) => ({ nested: true, echo: event });
        """,
    "esm/mod.mjs": """
        export const handler = async (event) => ({ esm: 'mjs', echo: event });
        """,
    "typemod/package.json": '{"type": "module"}',
    "typemod/app.js": """
        export const handler = async () => ({ esm: 'type-module' });
        """,
    "cjs/thing.cjs": """
        module.exports.handler = async () => ({ cjs: true });
        """,
    "broken.js": """
        exports.handler = async () => {
        """,
}

PYTHON_HANDLERS = {
    "handlers.py": """
        import http.client
        import logging
        import os

        count = 0

        class ValidationError(Exception):
            pass

        def sync(event, context):
            return {"echo": event, "kind": "sync"}

        def counter(event, context):
            global count
            count += 1
            return {"count": count, "pid": os.getpid()}

        def context(event, context):
            cc = context.client_context
            return {
                "awsRequestId": context.aws_request_id,
                "functionName": context.function_name,
                "functionVersion": context.function_version,
                "invokedFunctionArn": context.invoked_function_arn,
                "memoryLimitInMB": context.memory_limit_in_mb,
                "logGroupName": context.log_group_name,
                "logStreamName": context.log_stream_name,
                "remaining": context.get_remaining_time_in_millis(),
                "clientContext": cc and {"custom": cc.custom, "env": cc.env},
                "identity": {"cognitoIdentityId": context.identity.cognito_identity_id,
                             "cognitoIdentityPoolId": context.identity.cognito_identity_pool_id},
                "traceEnv": os.environ.get("_X_AMZN_TRACE_ID"),
            }

        def throws(event, context):
            raise ValidationError("bad thing")

        def log(event, context):
            print("plain print")
            logging.getLogger().warning("hello %s", "world")
            return "logged"

        def unserializable(event, context):
            return {1, 2}

        not_a_function = 42

        class Obj:
            def method(self, event, context):
                return "nested attribute"

        obj = Obj()

        def stream(event, context):
            context.set_content_type("text/plain")
            for part in event["parts"]:
                yield part

        def stream_mixed(event, context):
            yield b"\\x00\\xffbin"
            yield "text"
            yield ""
            yield b""
            yield {"k": 1}

        def gated_stream(event, context):
            yield "first"
            host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
            conn = http.client.HTTPConnection(host, int(port))
            conn.request("GET", event["gate_path"])
            conn.getresponse().read()
            yield "second"

        def stream_fails(event, context):
            yield "partial"
            raise ValidationError("mid-stream")

        def stream_fails_early(event, context):
            raise ValidationError("before any write")
            yield "never"
        """,
    "nested/dir/deep.py": """
        def handler(event, context):
            return {"nested": True, "echo": event}
        """,
    "broken.py": """
        def handler(event, context)
            return 1
        """,
}


def write_tree(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(textwrap.dedent(text).lstrip())


class Bootstrap:
    """One bootstrap process; stdout/stderr lines are collected as they come."""

    def __init__(self, lang, task_root, handler, fake, ws=True):
        env = {
            "PATH": "/usr/bin:/bin",
            "AWS_LAMBDA_RUNTIME_API": fake.address,
            "_HANDLER": handler,
            "LAMBDA_TASK_ROOT": str(task_root),
            "AWS_LAMBDA_FUNCTION_NAME": "test-fn",
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
            "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/test-fn",
            "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]0123abcd",
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "TZ": ":UTC",
        }
        if lang == "node":
            env.update(NODE_PATH=NODE_MODULES, LAMBDA_RUNTIME_DIR=NODE_DIR,
                       AWS_EXECUTION_ENV="AWS_Lambda_nodejs20.x")
            cmd = ["/usr/bin/node", os.path.join(NODE_DIR, "bootstrap.js")]
        else:
            env.update(LAMBDA_RUNTIME_DIR=PYTHON_DIR, AWS_EXECUTION_ENV="AWS_Lambda_python3.11")
            cmd = ["/usr/bin/python3", os.path.join(PYTHON_DIR, "bootstrap.py")]
        if not ws:
            env["LAMBDA_USE_WEBSOCKET"] = "false"
        self.p = Proc(cmd, cwd=str(task_root), env=env, stdin=subprocess.DEVNULL)
        self.proc = self.p.proc

    def output(self, name="stdout"):
        return [line.rstrip("\n") for line in self.p.output(name)]

    def wait_line(self, pattern, name="stdout", timeout=TIMEOUT):
        regex = re.compile(pattern)
        line = self.p.find_line(lambda l: regex.search(l.rstrip("\n")), name, timeout)
        if line is None:
            raise AssertionError("no %s line matches %r:\n%s" % (name, pattern, self.describe()))
        return line.rstrip("\n")

    def describe(self):
        return "stdout:\n%s\nstderr:\n%s" % ("\n".join(self.output("stdout")), "\n".join(self.output("stderr")))

    def wait_exit(self, timeout=TIMEOUT):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("the bootstrap did not exit:\n" + self.describe())

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(TIMEOUT)
        self.p.join(TIMEOUT)


class Harness:
    """A fake runtime API plus the bootstrap under test, in one mode."""

    def __init__(self, lang, mode, task_root, ws_mode=None, **fake_args):
        self.lang = lang
        self.mode = mode
        self.task_root = task_root
        write_tree(task_root, NODE_HANDLERS if lang == "node" else PYTHON_HANDLERS)
        if ws_mode is None:
            ws_mode = "reject" if mode == "fallback" else "accept"
        self.fake = FakeRuntime(ws_mode=ws_mode, **fake_args)
        self.boot = None

    def start(self, handler):
        self.boot = Bootstrap(self.lang, self.task_root, handler, self.fake, ws=self.mode != "http")
        return self.boot

    def call(self, payload=None, **kw):
        rid = self.fake.invoke(payload, **kw)
        return self.result(rid)

    def result(self, rid, timeout=TIMEOUT):
        try:
            res = self.fake.wait_result(rid, timeout)
        except AssertionError as e:
            raise AssertionError("%s\n%s" % (e, self.boot.describe() if self.boot else ""))
        self.check_channel(res)
        return res

    def check_channel(self, res):
        assert res.channel == ("ws" if self.mode == "ws" else "http"), (res, self.boot.describe())
        assert not self.fake.violations, self.fake.violations
        if self.mode == "ws":
            assert self.fake.http_next_calls == 0
        if self.mode == "http":
            assert self.fake.ws_connections == 0
        if self.mode == "fallback":
            self.boot.wait_line(FALLBACK_LINE, name="stderr")  # stderr is read by another thread
            falls = [line for line in self.boot.output("stderr") if FALLBACK_LINE in line]
            assert len(falls) == 1, self.boot.describe()

    def close(self):
        if self.boot:
            self.boot.kill()
        self.fake.close()


@pytest.fixture
def harness(tmp_path):
    made = []

    def make(lang, mode, **kw):
        h = Harness(lang, mode, tmp_path / ("task-%d" % len(made)), **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def handler_name(lang, node_name, python_name=None):
    return "handlers." + (node_name if lang == "node" else (python_name or node_name))


ISO = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


# ---------------------------------------------------------------- buffered handlers


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_sync_handler_echoes_event(harness, lang, mode):
    h = harness(lang, mode)
    h.start(handler_name(lang, "sync"))
    event = {"a": [1, 2, {"b": None}], "s": "héllo ✓"}
    res = h.call(event)
    assert res.kind == "response"
    assert res.payload == {"echo": event, "kind": "sync"}
    if mode != "ws":
        assert res.headers["content-type"] == "application/json"
    if mode == "ws":
        reg = h.fake.wait_registered()
        assert reg["function_name"] == "test-fn"
        assert reg["version"] == "$LATEST"
        assert reg["instance_id"] == "2026/01/01/[$LATEST]0123abcd"
        assert reg["runtime"] == ("nodejs20.x" if lang == "node" else "python3.11")


@pytest.mark.parametrize("mode", MODES)
def test_node_async_callback_and_legacy_handlers(harness, mode):
    cases = [
        ("asyncHandler", {"x": 1}, {"echo": {"x": 1}, "kind": "async"}),
        ("callback", {"x": 2}, {"echo": {"x": 2}, "kind": "callback"}),
        ("succeed", None, {"kind": "succeed"}),
        ("noResult", None, None),  # no return, no callback: null once the loop is empty
    ]
    for name, event, expected in cases:
        h = harness("node", mode)
        h.start("handlers." + name)
        res = h.call(event)
        assert (res.kind, res.payload) == ("response", expected), name
        h.close()


@pytest.mark.parametrize("mode", MODES)
def test_node_callback_waits_for_empty_event_loop(harness, mode):
    h = harness("node", mode)
    h.start("handlers.waits")
    # The default waits for the timer, which changes the result before it is sent.
    assert h.call({}).payload == {"timerRan": True}
    assert h.call({"noWait": True}).payload == {"timerRan": False}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_nested_folder_and_attribute_handlers(harness, lang, mode):
    names = ["nested/dir/deep.handler", "handlers.obj.method"]
    if lang == "python":
        names.append("nested.dir.deep.handler")
    for name in names:
        h = harness(lang, mode)
        h.start(name)
        res = h.call({"n": 1})
        expected = "nested attribute" if "obj" in name else {"nested": True, "echo": {"n": 1}}
        assert res.payload == expected, name
        h.close()


@pytest.mark.parametrize("mode", MODES)
def test_node_module_kinds(harness, mode):
    for name, expected in [
        ("esm/mod.handler", {"esm": "mjs", "echo": {"k": "v"}}),
        ("typemod/app.handler", {"esm": "type-module"}),
        ("cjs/thing.handler", {"cjs": True}),
    ]:
        h = harness("node", mode)
        h.start(name)
        assert h.call({"k": "v"}).payload == expected, name
        h.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_context_fields(harness, lang, mode):
    h = harness(lang, mode)
    h.start(handler_name(lang, "context"))
    deadline = int(time.time() * 1000) + 20000
    arn = "arn:aws:lambda:us-east-1:000000000000:function:test-fn:live"
    client_context = {"custom": {"k": "v"}, "env": {"e": "1"}}
    identity = {"cognitoIdentityId": "id-1", "cognitoIdentityPoolId": "pool-1"}
    trace = "Root=1-5f84c7a1-0123456789abcdef01234567;Sampled=1"
    rid = h.fake.invoke({}, deadline_ms=deadline, arn=arn, client_context=client_context,
                        identity=identity, trace_id=trace)
    ctx = h.result(rid).payload
    assert ctx["awsRequestId"] == rid
    assert ctx["functionName"] == "test-fn"
    assert ctx["functionVersion"] == "$LATEST"
    assert ctx["invokedFunctionArn"] == arn
    assert ctx["memoryLimitInMB"] == "256"
    assert ctx["logGroupName"] == "/aws/lambda/test-fn"
    assert ctx["logStreamName"] == "2026/01/01/[$LATEST]0123abcd"
    assert 0 < ctx["remaining"] <= 20000
    assert ctx["clientContext"] == client_context
    assert ctx["identity"] == identity
    assert ctx["traceEnv"] == trace
    if lang == "node":
        assert ctx["callbackWaitsForEmptyEventLoop"] is True


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_thrown_error_shape_and_process_survives(harness, lang, mode):
    h = harness(lang, mode)
    boot = h.start(handler_name(lang, "throws"))
    rid = h.fake.invoke({})
    res = h.result(rid)
    assert res.kind == "error"
    err = res.error
    assert err["errorType"] == "ValidationError"
    assert err["errorMessage"] == "bad thing"
    assert isinstance(err["stackTrace"], list) and err["stackTrace"]
    assert all(isinstance(line, str) for line in err["stackTrace"])
    assert any("handlers." in line for line in err["stackTrace"]), err["stackTrace"]
    assert not any("bootstrap" in line for line in err["stackTrace"]) or lang == "node"
    if mode != "ws":
        assert res.error_type_header == "ValidationError"
        if lang == "python":
            assert list(err) == ["errorMessage", "errorType", "requestId", "stackTrace"]
            assert err["requestId"] == rid
    if lang == "node":
        assert err["stackTrace"][0] == "ValidationError: bad thing"
    else:
        assert err["stackTrace"][0].startswith('  File "')
    # The error is logged, and the same process takes the next invocation.
    boot.wait_line("ValidationError")
    res2 = h.call({})
    assert res2.kind == "error" and res2.error["errorMessage"] == "bad thing"
    assert boot.proc.poll() is None


@pytest.mark.parametrize("mode", MODES)
def test_node_callback_error_uncaught_and_unserializable(harness, mode):
    h = harness("node", mode)
    h.start("handlers.callbackError")
    res = h.call({})
    assert (res.kind, res.error["errorType"], res.error["errorMessage"]) == ("error", "ValidationError", "from callback")
    h.close()

    h = harness("node", mode)
    boot = h.start("handlers.uncaught")
    for _ in range(2):  # the process survives and serves again
        res = h.call({})
        assert (res.kind, res.error["errorType"], res.error["errorMessage"]) == ("error", "RangeError", "thrown later")
    assert boot.proc.poll() is None
    h.close()

    h = harness("node", mode)
    h.start("handlers.unserializable")
    res = h.call({})
    assert (res.kind, res.error["errorType"]) == ("error", "Runtime.JSONStringifyError")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_large_event_and_response(harness, lang, mode):
    h = harness(lang, mode)
    h.start(handler_name(lang, "sync"))
    big = "x" * (3 * 1024 * 1024) + "é"
    res = h.call({"big": big})
    assert res.payload == {"echo": {"big": big}, "kind": "sync"}


@pytest.mark.parametrize("mode", MODES)
def test_python_unserializable_result(harness, mode):
    h = harness("python", mode)
    h.start("handlers.unserializable")
    res = h.call({})
    assert res.kind == "error"
    assert res.error["errorType"] == "Runtime.MarshalError"
    assert res.error["errorMessage"].startswith("Unable to marshal response:")


INIT_ERRORS = {
    # kind: (node handler, python handler, errorType, message fragment)
    "missing-module": ("nothere.handler", "nothere.handler", "Runtime.ImportModuleError", "nothere"),
    "missing-handler": ("handlers.absent", "handlers.absent", "Runtime.HandlerNotFound", "absent"),
    "not-a-function": ("handlers.notAFunction", "handlers.not_a_function", "Runtime.HandlerNotFound", "not"),
    "syntax-error": ("broken.handler", "broken.handler", "Runtime.UserCodeSyntaxError", "yntax"),
    "malformed": ("nodot", "nodot", "Runtime.MalformedHandlerName", "handler"),
}


@pytest.mark.parametrize("mode", ["ws", "http"])
@pytest.mark.parametrize("kind", sorted(INIT_ERRORS))
@pytest.mark.parametrize("lang", LANGS)
def test_init_errors(harness, lang, kind, mode):
    node_name, python_name, error_type, fragment = INIT_ERRORS[kind]
    h = harness(lang, mode)
    boot = h.start(node_name if lang == "node" else python_name)
    headers, body = h.fake.wait_init_error()
    assert headers["lambda-runtime-function-error-type"] == error_type
    assert body["errorType"] == error_type
    assert fragment in body["errorMessage"], body
    assert isinstance(body["stackTrace"], list)
    assert boot.wait_exit() == 1
    assert not h.fake.registers and h.fake.http_next_calls == 0


# ---------------------------------------------------------------- streaming


def stream_handler(lang, node_name, python_name):
    return "handlers." + (node_name if lang == "node" else python_name)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_streaming_chunks_in_order(harness, lang, mode):
    h = harness(lang, mode)
    h.start(stream_handler(lang, "stream", "stream"))
    parts = ["alpha ", "béta ", "", "gamma " * 1000, "nul\x00 ", "delta"]
    res = h.call({"parts": parts})
    assert res.kind == "stream"
    assert res.content_type == "text/plain"
    assert b"".join(res.chunks) == "".join(parts).encode()
    assert res.stream_error is None
    if mode == "ws":
        assert res.chunks == [p.encode() for p in parts if p]
    else:
        assert res.headers["lambda-runtime-function-response-mode"] == "streaming"
        assert res.headers["transfer-encoding"] == "chunked"
        assert "lambda-runtime-function-error-type" in res.headers["trailer"].lower()
        assert "lambda-runtime-function-error-body" in res.headers["trailer"].lower()
    # The process keeps serving streams.
    res = h.call({"parts": ["again"]})
    assert b"".join(res.chunks) == b"again"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_streaming_sends_chunks_as_they_are_written(harness, lang, mode):
    h = harness(lang, mode)
    h.fake.gate("g")
    h.start(stream_handler(lang, "gatedStream", "gated_stream"))
    rid = h.fake.invoke({"gate": "http://%s/test/gate/g" % h.fake.address, "gate_path": "/test/gate/g"})
    res = h.fake.wait_chunks(rid, 1)
    # The handler is blocked on the gate, so the first chunk was sent before the end.
    assert not res.done and res.chunks == [b"first"], res
    h.fake.open_gate("g")
    res = h.result(rid)
    assert b"".join(res.chunks) == b"firstsecond"
    assert res.content_type == "application/octet-stream"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_streaming_failures(harness, lang, mode):
    h = harness(lang, mode)
    h.start(stream_handler(lang, "streamFails", "stream_fails"))
    res = h.call({})
    assert res.kind == "stream"
    assert b"".join(res.chunks) == b"partial"
    err = res.stream_error
    assert err is not None, res
    if mode == "ws":
        assert err == {"type": "ValidationError", "message": "mid-stream"}
    else:
        assert err["type"] == "ValidationError"
        assert err["body"]["errorType"] == "ValidationError"
        assert err["body"]["errorMessage"] == "mid-stream"
        assert isinstance(err["body"]["stackTrace"], list)
    h.close()

    # Failing before anything was written is an ordinary error.
    h = harness(lang, mode)
    h.start(stream_handler(lang, "streamFailsEarly", "stream_fails_early"))
    res = h.call({})
    assert res.kind == "error", res
    assert (res.error["errorType"], res.error["errorMessage"]) == ("ValidationError", "before any write")


@pytest.mark.parametrize("mode", MODES)
def test_python_stream_item_encoding(harness, mode):
    h = harness("python", mode)
    h.start("handlers.stream_mixed")
    res = h.call({})
    assert res.content_type == "application/octet-stream"
    assert b"".join(res.chunks) == b'\x00\xffbintext{"k": 1}'


@pytest.mark.parametrize("mode", MODES)
def test_node_http_response_stream_prelude(harness, mode):
    h = harness("node", mode)
    h.start("handlers.httpStream")
    res = h.call({})
    assert res.content_type == "application/vnd.awslambda.http-integration-response"
    prelude, _, body = b"".join(res.chunks).partition(b"\x00" * 8)
    assert json.loads(prelude) == {"statusCode": 201, "headers": {"a": "b"}}
    assert body == b"body"


# ---------------------------------------------------------------- logs, reuse, channel


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_log_line_format(harness, lang, mode):
    h = harness(lang, mode)
    boot = h.start(handler_name(lang, "log"))
    rid = h.fake.invoke({})
    assert h.result(rid).payload == "logged"
    if lang == "node":
        boot.wait_line("^%s\t%s\tINFO\thello world$" % (ISO, rid))
        boot.wait_line("^%s\t%s\tWARN\tcareful$" % (ISO, rid))
        boot.wait_line("^%s\t%s\tERROR\tmulti\rline$" % (ISO, rid))
    else:
        boot.wait_line("^plain print$")
        boot.wait_line(r"^\[WARNING\]\t%s\t%s\thello world$" % (ISO, rid))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("lang", LANGS)
def test_warm_process_serves_sequential_invocations(harness, lang, mode):
    h = harness(lang, mode)
    boot = h.start(handler_name(lang, "counter"))
    results = [h.call({"i": i}).payload for i in range(5)]
    assert [r["count"] for r in results] == [1, 2, 3, 4, 5]
    assert {r["pid"] for r in results} == {boot.proc.pid}
    if mode == "ws":
        assert h.fake.ws_connections == 1


@pytest.mark.parametrize("lang", LANGS)
def test_ws_ping_is_answered(harness, lang):
    h = harness(lang, "ws")
    h.start(handler_name(lang, "sync"))
    h.fake.wait_registered()
    h.fake.ping()
    assert h.call({"after": "ping"}).payload["echo"] == {"after": "ping"}


@pytest.mark.parametrize("lang", LANGS)
def test_fallback_after_error_response(harness, lang):
    h = harness(lang, "fallback", ws_mode="error_response")
    boot = h.start(handler_name(lang, "counter"))
    h.fake.wait_registered()
    assert h.call({}).payload["count"] == 1
    assert h.call({}).payload["count"] == 2
    assert "refused" in boot.wait_line(FALLBACK_LINE, name="stderr")


@pytest.mark.parametrize("lang", LANGS)
def test_next_error_status_exits(harness, lang):
    h = harness(lang, "http", next_status=500)
    boot = h.start(handler_name(lang, "sync"))
    assert boot.wait_exit() == 1
    assert h.fake.http_next_calls == 1
    boot.wait_line("500", name="stderr")


@pytest.mark.parametrize("lang", LANGS)
def test_ws_close_ends_the_process(harness, lang):
    h = harness(lang, "ws")
    boot = h.start(handler_name(lang, "sync"))
    h.fake.wait_registered()
    assert h.call({}).kind == "response"
    h.fake.peers[-1].send_close()
    assert boot.wait_exit() == 0
