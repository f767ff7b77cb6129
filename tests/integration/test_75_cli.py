"""`realm deploy`, `realm functions` and `realm delete`: the thin CLI clients of
the control API (docs/control-api.md), run as real processes against a real
`realm serve`, plus the client-side errors (usage, unreachable endpoint)."""
import base64
import hashlib
import json
import os
import re
import socket
import subprocess
import zipfile

import pytest

from conftest import assert_no_sanitizer_report, realm_bin

BOOTSTRAP = "#!/bin/sh\nset -eu\necho bootstrap\n"
CREATED_RE = re.compile(
    r"^(created|updated) (\S+) \(([^,)]+)(?:, ([^)]+))?\): [0-9.]+ (?:B|KiB|MiB), sha256 (\S+)\n$")


def run(*args, env_endpoint=None, timeout=60):
    """Runs `realm ARGS` with $REALM_ENDPOINT unset unless env_endpoint is given."""
    env = dict(os.environ)
    env.pop("REALM_ENDPOINT", None)
    if env_endpoint is not None:
        env["REALM_ENDPOINT"] = env_endpoint
    p = subprocess.run([realm_bin(), *args], capture_output=True, text=True, timeout=timeout,
                       env=env)
    assert_no_sanitizer_report(p.stderr)
    return p


def endpoint(server):
    return f"http://127.0.0.1:{server.ports['control']}"


def cli(server, *args):
    return run(*args, "--endpoint", endpoint(server))


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\nstdout: {p.stdout}\nstderr: {p.stderr}"
    return p


def closed_port():
    """A port nothing listens on (bound, then released)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


@pytest.fixture
def fn_dir(tmp_path):
    """A `provided` function tree: an executable bootstrap and a data file."""
    d = tmp_path / "fn"
    d.mkdir()
    (d / "bootstrap").write_text(BOOTSTRAP)
    (d / "bootstrap").chmod(0o755)
    (d / "lib").mkdir()
    (d / "lib" / "data.txt").write_text("some data\n")
    return d


@pytest.fixture
def node_dir(tmp_path):
    d = tmp_path / "node"
    d.mkdir()
    (d / "index.js").write_text("exports.handler = async (e) => ({hello: e.name});\n")
    return d


def deploy(server, src, name="hello", *extra, runtime="provided.al2023"):
    """Deploys and returns (verb, FunctionConfiguration fetched with --json)."""
    p = ok(cli(server, "deploy", str(src), "--name", name, "--runtime", runtime, *extra))
    m = CREATED_RE.match(p.stdout)
    assert m, p.stdout
    return m, configs_by_name(server)[name]


def configs_by_name(server):
    p = ok(cli(server, "functions", "--json"))
    return {c["FunctionName"]: c for c in json.loads(p.stdout)}


# ---- deploy, list ----------------------------------------------------------------


def test_deploy_dir_then_list(server, fn_dir):
    p = ok(cli(server, "deploy", str(fn_dir), "--name", "hello", "--runtime", "provided.al2023"))
    m = CREATED_RE.match(p.stdout)
    assert m, p.stdout
    assert m.group(1) == "created" and m.group(2) == "hello", p.stdout
    assert m.group(3) == "provided.al2023" and m.group(4) is None, p.stdout
    sha = m.group(5)
    assert len(base64.b64decode(sha)) == 32, sha
    assert p.stderr == ""

    # Human table: a header and one row, columns aligned.
    p = ok(cli(server, "functions"))
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["NAME", "RUNTIME", "HANDLER", "MEMORY", "TIMEOUT", "SIZE",
                                "LAST-MODIFIED"], p.stdout
    assert len(lines) == 2, p.stdout
    row = lines[1].split()
    assert row[:5] == ["hello", "provided.al2023", "-", "128MB", "3s"], p.stdout
    assert lines[0].index("RUNTIME") == lines[1].index("provided.al2023"), p.stdout
    assert re.match(r"^\d{4}-\d\d-\d\dT", row[6]), p.stdout

    # JSON: the FunctionConfigurations, agreeing with what deploy printed.
    p = ok(cli(server, "functions", "--json"))
    configs = json.loads(p.stdout)
    assert isinstance(configs, list) and len(configs) == 1, p.stdout
    c = configs[0]
    assert c["FunctionName"] == "hello" and c["Runtime"] == "provided.al2023", c
    assert c["CodeSha256"] == sha, c
    assert c["CodeSize"] > 0 and c["State"] == "Active", c


def test_deploy_json_prints_the_configuration(server, node_dir):
    p = ok(cli(server, "deploy", str(node_dir), "--name", "web", "--runtime", "nodejs20.x",
               "--handler", "index.handler", "--memory", "256", "--timeout", "30",
               "--description", "a web function", "--json"))
    c = json.loads(p.stdout)
    assert c["FunctionName"] == "web" and c["Runtime"] == "nodejs20.x", c
    assert c["Handler"] == "index.handler", c
    assert (c["MemorySize"], c["Timeout"], c["Description"]) == (256, 30, "a web function"), c
    assert c["FunctionArn"].endswith(":function:web"), c
    assert "\n  " in p.stdout, "--json output should be pretty-printed"
    # The human form names the handler too; a redeploy without --handler
    # keeps it (a Node function cannot be created without one).
    p = ok(cli(server, "deploy", str(node_dir), "--name", "web", "--runtime", "nodejs20.x"))
    m = CREATED_RE.match(p.stdout)
    assert m and m.groups()[:4] == ("updated", "web", "nodejs20.x", "index.handler"), p.stdout


def test_redeploy_updates_code_and_given_options_only(server, fn_dir):
    m1, c1 = deploy(server, fn_dir, "hello", "--memory", "256", "--description", "first")
    assert m1.group(1) == "created"

    # Same tree, even with other mtimes: same bytes, same CodeSha256.
    for f in ("bootstrap", "lib/data.txt"):
        os.utime(fn_dir / f, (1_000_000_000, 1_000_000_000))
    m2, c2 = deploy(server, fn_dir, "hello")
    assert m2.group(1) == "updated", m2.string
    assert m2.group(5) == m1.group(5) == c2["CodeSha256"], (m1.string, m2.string)
    # Options not given stay as they were.
    assert (c2["MemorySize"], c2["Description"]) == (256, "first"), c2

    # Changed code: a new CodeSha256; options given change.
    (fn_dir / "lib" / "data.txt").write_text("other data\n")
    m3, c3 = deploy(server, fn_dir, "hello", "--timeout", "10")
    assert m3.group(1) == "updated"
    assert c3["CodeSha256"] == m3.group(5) != c1["CodeSha256"], (m1.string, m3.string)
    assert (c3["MemorySize"], c3["Timeout"], c3["Description"]) == (256, 10, "first"), c3
    assert list(configs_by_name(server)) == ["hello"]


def test_env_sets_and_replaces_variables(server, fn_dir):
    _, c = deploy(server, fn_dir, "envy", "--env", "GREETING=hi", "--env", "MODE=a=b",
                  "--env", "EMPTY=")
    assert c["Environment"]["Variables"] == {"GREETING": "hi", "MODE": "a=b", "EMPTY": ""}, c
    # Redeploy without --env keeps them; with --env replaces them all.
    _, c = deploy(server, fn_dir, "envy")
    assert c["Environment"]["Variables"] == {"GREETING": "hi", "MODE": "a=b", "EMPTY": ""}, c
    _, c = deploy(server, fn_dir, "envy", "--env", "ONLY=1")
    assert c["Environment"]["Variables"] == {"ONLY": "1"}, c


def test_deploy_zip_file(server, tmp_path):
    path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("bootstrap")
        info.external_attr = 0o100755 << 16
        z.writestr(info, BOOTSTRAP)
        z.writestr("handler.txt", "hello\n")
    data = path.read_bytes()
    m, c = deploy(server, path, "zipped", runtime="provided")
    assert m.group(1) == "created"
    # The zip is sent as is: the hash and size are the file's.
    assert c["CodeSha256"] == base64.b64encode(hashlib.sha256(data).digest()).decode(), c
    assert c["CodeSize"] == len(data), c


def test_deploy_refused_by_the_api(server, fn_dir):
    p = cli(server, "deploy", str(fn_dir), "--name", "bad", "--runtime", "cobol85")
    assert p.returncode == 1, p
    assert p.stderr.startswith("realm deploy: InvalidParameterValueException: "), p.stderr
    assert p.stdout == ""
    p = cli(server, "deploy", str(fn_dir), "--name", "bad", "--runtime", "provided",
            "--memory", "64")
    assert p.returncode == 1, p
    assert p.stderr.startswith("realm deploy: InvalidParameterValueException: "), p.stderr
    assert ok(cli(server, "functions")).stdout == "no functions\n"


def test_deploy_unreadable_source(server, tmp_path):
    p = cli(server, "deploy", str(tmp_path / "missing"), "--name", "x", "--runtime", "provided")
    assert p.returncode == 1, p
    assert "cannot read" in p.stderr and "No such file or directory" in p.stderr, p.stderr
    notzip = tmp_path / "index.js"
    notzip.write_text("exports.handler = 1;\n")
    p = cli(server, "deploy", str(notzip), "--name", "x", "--runtime", "provided")
    assert p.returncode == 1, p
    assert "is not a zip file" in p.stderr, p.stderr


def test_functions_follows_pages(server, tmp_path):
    path = tmp_path / "pkg.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("bootstrap", BOOTSTRAP)
    names = [f"fn-{i:03d}" for i in range(57)]  # more than one page of 50
    for n in names:
        ok(cli(server, "deploy", str(path), "--name", n, "--runtime", "provided"))
    assert sorted(configs_by_name(server)) == names
    lines = ok(cli(server, "functions")).stdout.splitlines()
    assert [ln.split()[0] for ln in lines[1:]] == names


# ---- delete ------------------------------------------------------------------------


def test_delete_then_list_shows_nothing(server, fn_dir):
    deploy(server, fn_dir, "hello")
    deploy(server, fn_dir, "other")
    p = ok(cli(server, "delete", "hello"))
    assert p.stdout == "deleted hello\n" and p.stderr == "", p
    p = ok(cli(server, "delete", "other", "--json"))
    assert json.loads(p.stdout) == {"deleted": "other"}, p.stdout
    assert ok(cli(server, "functions")).stdout == "no functions\n"
    assert json.loads(ok(cli(server, "functions", "--json")).stdout) == []


def test_delete_missing_function(server):
    p = cli(server, "delete", "nope")
    assert p.returncode == 1, p
    assert p.stderr.startswith("realm delete: ResourceNotFoundException: "), p.stderr
    assert p.stdout == ""


# ---- endpoint ----------------------------------------------------------------------


@pytest.mark.parametrize("args", [["functions"], ["delete", "x"],
                                  ["deploy", ".", "--name", "x", "--runtime", "provided"]])
def test_unreachable_endpoint(args, tmp_path):
    port = closed_port()
    if args[0] == "deploy":
        (tmp_path / "bootstrap").write_text(BOOTSTRAP)
        args = ["deploy", str(tmp_path), *args[2:]]
    p = run(*args, "--endpoint", f"http://127.0.0.1:{port}")
    assert p.returncode == 1, p
    assert p.stderr == (f"realm {args[0]}: cannot reach the control API at "
                        f"http://127.0.0.1:{port}: Connection refused\n"), p.stderr
    assert p.stdout == ""


def test_endpoint_from_environment(server):
    # $REALM_ENDPOINT is used when there is no --endpoint ...
    p = run("functions", env_endpoint=endpoint(server) + "/")
    assert ok(p).stdout == "no functions\n"
    # ... and --endpoint wins over it.
    port = closed_port()
    p = run("functions", "--endpoint", endpoint(server), env_endpoint=f"http://127.0.0.1:{port}")
    assert ok(p).stdout == "no functions\n"
    p = run("functions", env_endpoint=f"http://127.0.0.1:{port}")
    assert p.returncode == 1 and f"127.0.0.1:{port}: Connection refused" in p.stderr, p.stderr


@pytest.mark.parametrize("url", ["https://127.0.0.1:9000", "ftp://127.0.0.1/",
                                 "http://127.0.0.1:99999", "http://user@127.0.0.1:9000"])
def test_bad_endpoint(url):
    p = run("functions", "--endpoint", url)
    assert p.returncode == 2, p
    assert p.stderr.startswith("realm functions: endpoint "), p.stderr
    if url.startswith("https"):
        assert "https:// is not supported" in p.stderr, p.stderr


# ---- usage -------------------------------------------------------------------------


@pytest.mark.parametrize("cmd", ["deploy", "functions", "delete"])
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_command_help(cmd, flag):
    p = run(cmd, flag)
    assert p.returncode == 0, p
    assert p.stdout.startswith(f"Usage: realm {cmd}"), p.stdout
    assert "--endpoint" in p.stdout and "--json" in p.stdout
    assert p.stderr == ""


def test_main_usage_lists_the_commands():
    p = run("--help")
    for cmd in ("deploy", "functions", "delete"):
        assert f"  {cmd} " in p.stdout, p.stdout


USAGE_ERRORS = [
    (["deploy", "DIR", "--runtime", "provided"], "missing --name"),
    (["deploy", "DIR", "--name", "x"], "missing --runtime"),
    (["deploy", "--name", "x", "--runtime", "provided"], "missing the DIR or ZIP"),
    (["deploy", "DIR", "DIR", "--name", "x", "--runtime", "provided"], "unexpected argument"),
    (["deploy", "DIR", "--name", "x", "--runtime", "provided", "--bogus"],
     "unknown option '--bogus'"),
    (["deploy", "DIR", "--name", "x", "--runtime", "provided", "--env", "NOEQUALS"],
     "--env wants KEY=VALUE"),
    (["deploy", "DIR", "--name", "x", "--runtime", "provided", "--env", "=v"],
     "--env wants KEY=VALUE"),
    (["deploy", "DIR", "--name", "x", "--runtime", "provided", "--memory", "lots"],
     "--memory wants a number"),
    (["deploy", "DIR", "--name", "x", "--runtime", "provided", "--memory", "-5"],
     "--memory wants a number"),
    (["deploy", "DIR", "--name", "x", "--runtime", "provided", "--timeout", "3s"],
     "--timeout wants a number"),
    (["deploy", "DIR", "--name", "x", "--runtime"], "option '--runtime' needs a value"),
    (["functions", "--bogus"], "unknown option '--bogus'"),
    (["functions", "extra"], "unexpected argument 'extra'"),
    (["functions", "--endpoint"], "option '--endpoint' needs a value"),
    (["delete"], "missing the NAME"),
    (["delete", "a", "b"], "unexpected argument 'b'"),
    (["delete", "a", "--force"], "unknown option '--force'"),
]


@pytest.mark.parametrize("args,message", USAGE_ERRORS,
                         ids=[" ".join(a) for a, _ in USAGE_ERRORS])
def test_usage_errors(args, message, tmp_path):
    args = [str(tmp_path) if a == "DIR" else a for a in args]
    # Usage errors are found before any request: the endpoint is never contacted.
    p = run(*args, env_endpoint=f"http://127.0.0.1:{closed_port()}")
    assert p.returncode == 2, p
    assert p.stderr.startswith(f"realm {args[0]}: {message}"), p.stderr
    assert f"Usage: realm {args[0]}" in p.stderr, p.stderr
    assert p.stdout == ""
