"""The `realm` command line: help, version, flag errors, config file, port
conflicts and log formats."""
import json
import signal
import socket
import subprocess

import pytest

from conftest import assert_no_sanitizer_report, realm_bin

ALL_FLAGS = ["--config", "--host", "--port", "--control-port", "--runtime-port",
             "--metrics-port", "--data-dir", "--log-format", "--log-level",
             "--max-message-bytes", "--max-send-queue-bytes", "--max-header-bytes",
             "--max-body-bytes", "--header-timeout-ms", "--idle-timeout-ms",
             "--ws-ping-interval-ms", "--shutdown-grace-ms", "--max-calls-per-connection"]


def run(*args, timeout=30, cwd=None):
    return subprocess.run([realm_bin(), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd)


def serve_args(tmp_path, *args):
    """`serve` on ephemeral ports with a temp data dir, plus args."""
    return ["serve", "--port", "0", "--control-port", "0", "--runtime-port", "0",
            "--metrics-port", "0", "--data-dir", str(tmp_path / "data"), *args]


def http_status(port, header_bytes=0):
    """Status of GET /metrics carrying an X-Pad header of header_bytes bytes."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        pad = f"X-Pad: {'a' * header_bytes}\r\n" if header_bytes else ""
        s.sendall(f"GET /metrics HTTP/1.1\r\nHost: t\r\n{pad}Connection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return int(data.split(b" ", 2)[1])
    finally:
        s.close()


# ---- help and version --------------------------------------------------------------


@pytest.mark.parametrize("arg", ["--help", "-h", "help"])
def test_help(arg):
    p = run(arg)
    assert p.returncode == 0, p
    assert p.stdout.startswith("Usage: realm <command>"), p.stdout
    assert "serve" in p.stdout and "--version" in p.stdout
    assert p.stderr == ""


@pytest.mark.parametrize("arg", ["--version", "-V", "version"])
def test_version(arg):
    p = run(arg)
    assert p.returncode == 0, p
    assert p.stdout == "realm 0.1.0\n", repr(p.stdout)
    assert p.stderr == ""


def test_no_command_is_usage_error():
    p = run()
    assert p.returncode == 2, p
    assert "Usage: realm" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("cmd", ["bogus", "--bogus", "Serve"])
def test_unknown_command(cmd):
    p = run(cmd)
    assert p.returncode == 2, p
    assert f"unknown command '{cmd}'" in p.stderr, p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("arg", ["--help", "-h"])
def test_serve_help_lists_every_flag(arg):
    p = run("serve", arg)
    assert p.returncode == 0, p
    assert p.stdout.startswith("usage: realm serve"), p.stdout
    for flag in ALL_FLAGS:
        assert flag in p.stdout, f"{flag} missing from serve --help"
    for default in ("8080", "9000", "9001", "9090", "16KiB", "6MiB", "10000", "60000"):
        assert f"(default: {default})" in p.stdout, default
    assert p.stderr == ""


def test_serve_help_wins_over_bad_flags():
    p = run("serve", "--port", "nope", "--help")
    assert p.returncode == 0, p
    assert p.stdout.startswith("usage: realm serve")


# ---- bad flags -----------------------------------------------------------------------


@pytest.mark.parametrize("args,flag", [
    (["--port", "abc"], "--port"),
    (["--port", "70000"], "--port"),
    (["--port", "-1"], "--port"),
    (["--control-port", "1.5"], "--control-port"),
    (["--metrics-port="], "--metrics-port"),
    (["--log-format", "xml"], "--log-format"),
    (["--log-level", "loud"], "--log-level"),
    (["--max-header-bytes", "10"], "--max-header-bytes"),
    (["--max-header-bytes", "16XB"], "--max-header-bytes"),
    (["--max-body-bytes", "-5"], "--max-body-bytes"),
    (["--max-message-bytes", "99999999999999999999999"], "--max-message-bytes"),
    (["--idle-timeout-ms", "1s"], "--idle-timeout-ms"),
    (["--header-timeout-ms", "0"], "--header-timeout-ms"),
    (["--shutdown-grace-ms", " 5"], "--shutdown-grace-ms"),
    (["--max-calls-per-connection", "0"], "--max-calls-per-connection"),
    (["--host", ""], "--host"),
    (["--port"], "--port"),
    (["--port", "--host", "x"], "--port"),
    (["--bogus", "1"], "--bogus"),
    (["--config"], "--config"),
    (["stray"], "stray"),
])
def test_bad_flag_exits_2_naming_it(tmp_path, args, flag):
    p = run(*serve_args(tmp_path, *args))
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert flag in p.stderr, p.stderr
    assert p.stderr.startswith("realm serve: "), p.stderr
    assert "listening" not in p.stdout
    assert_no_sanitizer_report(p.stderr)


def test_missing_config_file_exits_2(tmp_path):
    missing = tmp_path / "nope.conf"
    p = run(*serve_args(tmp_path, "--config", str(missing)))
    assert p.returncode == 2, p
    assert str(missing) in p.stderr, p.stderr


@pytest.mark.parametrize("line,needle", [
    ("bogus = 1", "unknown option 'bogus'"),
    ("max-header-bytes = tiny", "--max-header-bytes"),
    ("port 8080", "expected 'name = value'"),
    ('host = "unterminated', "unterminated"),
])
def test_bad_config_file_line_exits_2_with_path_and_line(tmp_path, line, needle):
    cfg = tmp_path / "realm.conf"
    cfg.write_text("# a comment\n\n" + line + "\n")
    p = run(*serve_args(tmp_path, "--config", str(cfg)))
    assert p.returncode == 2, p
    assert f"{cfg}:3:" in p.stderr, p.stderr
    assert needle in p.stderr, p.stderr


# ---- config file -----------------------------------------------------------------------


def test_config_file_sets_max_header_bytes(make_server, tmp_path):
    cfg = tmp_path / "realm.conf"
    cfg.write_text("# limits\nmax_header_bytes = 2KiB   # small\n")
    s = make_server("--config", str(cfg))
    port = s.ports["metrics"]
    assert http_status(port, 1000) == 200
    assert http_status(port, 3000) == 431
    # With the default (16 KiB) 3000 bytes would have been fine:
    d = make_server()
    assert http_status(d.ports["metrics"], 3000) == 200


def test_flag_overrides_config_file(make_server, tmp_path):
    cfg = tmp_path / "realm.conf"
    cfg.write_text('max-header-bytes = "2KiB"\n')
    # The flag comes before --config on the command line and still wins.
    s = make_server("--max-header-bytes", "8KiB", "--config", str(cfg))
    port = s.ports["metrics"]
    assert http_status(port, 3000) == 200
    assert http_status(port, 9000) == 431


def test_config_file_ports_are_used_and_flags_override(tmp_path):
    # The file asks for port 1 for the metrics listener (privileged or taken:
    # it would fail); the flag puts it back on an ephemeral port.
    cfg = tmp_path / "realm.conf"
    cfg.write_text("metrics-port = 1\nlog-format = json\n")
    args = serve_args(tmp_path, "--config", str(cfg))
    # serve_args passes --metrics-port 0 before --config: the flag must win.
    proc = subprocess.Popen([realm_bin(), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline() for _ in range(4)]
        metrics = [ln for ln in lines if ln.startswith("listening metrics ")]
        assert metrics and ":1/" not in metrics[0], lines
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    # log-format came from the file: stderr is JSON.
    for line in err.splitlines():
        json.loads(line)


# ---- port in use ------------------------------------------------------------------------


@pytest.mark.parametrize("listener,flag", [
    ("client", "--port"),
    ("control", "--control-port"),
    ("runtime", "--runtime-port"),
    ("metrics", "--metrics-port"),
])
def test_port_in_use_exits_1_naming_listener(tmp_path, listener, flag):
    taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        p = run(*serve_args(tmp_path, flag, str(port)))
    finally:
        taken.close()
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert f"{listener} listener" in p.stderr, p.stderr
    assert str(port) in p.stderr, p.stderr
    assert "in use" in p.stderr, p.stderr
    assert_no_sanitizer_report(p.stderr)
    # No listening line may claim success for the listener that failed.
    assert f"listening {listener} " not in p.stdout


# ---- listening lines and logs ------------------------------------------------------------


def test_listening_lines(server):
    lines = server.stdout_lines
    assert [ln.split()[1] for ln in lines] == ["client", "control", "runtime", "metrics"], lines
    assert lines[0] == f"listening client ws://127.0.0.1:{server.ports['client']}\n"
    assert lines[1] == f"listening control http://127.0.0.1:{server.ports['control']}\n"
    assert lines[2] == f"listening runtime http://127.0.0.1:{server.ports['runtime']}\n"
    assert lines[3] == f"listening metrics http://127.0.0.1:{server.ports['metrics']}/metrics\n"
    assert len(set(server.ports.values())) == 4


def test_log_format_json(make_server):
    s = make_server("--log-format", "json")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    lines = s.stderr.splitlines()
    assert len(lines) >= 3, lines  # started, received SIGTERM, shutting down...
    for line in lines:
        obj = json.loads(line)
        assert set(obj) >= {"ts", "level", "msg"}, obj
        assert obj["level"] in ("debug", "info", "warn", "error"), obj
    msgs = [json.loads(ln)["msg"] for ln in lines]
    assert any("started" in m for m in msgs), msgs
    assert any("SIGTERM" in m for m in msgs), msgs


def test_log_format_text(make_server):
    s = make_server("--log-format", "text")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    lines = s.stderr.splitlines()
    assert lines and all(" info " in ln or " warn " in ln for ln in lines), lines
    assert not any(ln.startswith("{") for ln in lines), lines


def test_log_level_warn_hides_info(make_server):
    s = make_server("--log-level", "warn")
    s.signal(signal.SIGTERM)
    assert s.wait() == 0
    assert s.stderr == "", s.stderr


def test_data_dir_is_created(make_server, tmp_path):
    d = tmp_path / "a" / "b" / "data"
    make_server(data_dir=str(d))
    assert d.is_dir()


def test_unusable_data_dir_exits_1(tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    p = run("serve", "--port", "0", "--control-port", "0", "--runtime-port", "0",
            "--metrics-port", "0", "--data-dir", str(f / "sub"))
    assert p.returncode == 1, p
    assert "data dir" in p.stderr, p.stderr
