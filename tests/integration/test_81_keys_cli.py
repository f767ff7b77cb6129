"""`realm keys create|list|revoke`: tenants and keys in DATA_DIR/auth.db, run
as real processes on temporary data dirs (no server needed): the round trip,
the --json shapes, secrets shown once and never stored, server.key and
auth.db modes, a world-readable server.key refused, and the usage errors."""
import json
import os
import re
import stat
import subprocess

import pytest

from conftest import assert_no_sanitizer_report, realm_bin

API_KEY_RE = re.compile(r"^rk_(k[0-9a-f]{12})_[a-z2-7]{32}$")
AKID_RE = re.compile(r"^AKIA[A-Z2-7]{16}$")
SECRET_RE = re.compile(r"^[A-Za-z0-9/+]{40}$")
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")


def run(*args, env_data_dir=None, cwd=None, timeout=30):
    env = dict(os.environ)
    env.pop("REALM_DATA_DIR", None)
    if env_data_dir is not None:
        env["REALM_DATA_DIR"] = env_data_dir
    p = subprocess.run([realm_bin(), "keys", *args], capture_output=True, text=True,
                       timeout=timeout, env=env, cwd=cwd)
    assert_no_sanitizer_report(p.stderr)
    return p


@pytest.fixture
def data_dir(tmp_path):
    return str(tmp_path / "data")


def create(data_dir, tenant, *extra):
    p = run("create", "--tenant", tenant, "--json", "--data-dir", data_dir, *extra)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def list_keys(data_dir):
    p = run("list", "--json", "--data-dir", data_dir)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def db_bytes(data_dir):
    """auth.db with its -wal (secrets would be in either)."""
    out = b""
    for name in ("auth.db", "auth.db-wal", "auth.db-shm"):
        path = os.path.join(data_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as f:
                out += f.read()
    return out


def test_create_json_shape(data_dir):
    c = create(data_dir, "acme")
    assert set(c) == {"tenant", "key_id", "api_key", "account_id", "access_key_id",
                      "secret_access_key"}
    assert c["tenant"] == "acme"
    m = API_KEY_RE.match(c["api_key"])
    assert m and m.group(1) == c["key_id"], c
    assert ACCOUNT_RE.match(c["account_id"]) and c["account_id"] != "000000000000"
    assert AKID_RE.match(c["access_key_id"]), c
    assert SECRET_RE.match(c["secret_access_key"]), c


def test_round_trip(data_dir):
    a1 = create(data_dir, "acme")
    a2 = create(data_dir, "acme", "--rate", "5/s", "--burst", "10")
    b = create(data_dir, "beta-2", "--rate", "2.5")
    # One account id per tenant, stable; different tenants differ.
    assert a1["account_id"] == a2["account_id"]
    assert b["account_id"] != a1["account_id"]
    assert len({a1["key_id"], a2["key_id"], b["key_id"]}) == 3
    assert len({a1["access_key_id"], a2["access_key_id"], b["access_key_id"]}) == 3

    keys = list_keys(data_dir)
    assert [k["key_id"] for k in keys] == [a1["key_id"], a2["key_id"], b["key_id"]]
    for k in keys:
        assert set(k) == {"key_id", "tenant", "account_id", "access_key_id", "rate", "burst",
                          "revoked", "created"}
        assert k["revoked"] is False
        assert isinstance(k["created"], int) and k["created"] > 1_600_000_000_000
    by_id = {k["key_id"]: k for k in keys}
    assert by_id[a1["key_id"]]["rate"] == 0 and by_id[a1["key_id"]]["burst"] == 0
    assert by_id[a2["key_id"]]["rate"] == 5 and by_id[a2["key_id"]]["burst"] == 10
    assert by_id[b["key_id"]]["rate"] == 2.5
    assert by_id[b["key_id"]]["tenant"] == "beta-2"
    assert by_id[b["key_id"]]["access_key_id"] == b["access_key_id"]
    # list never shows a secret
    listing = run("list", "--json", "--data-dir", data_dir).stdout + \
        run("list", "--data-dir", data_dir).stdout
    for c in (a1, a2, b):
        assert c["api_key"] not in listing
        assert c["secret_access_key"] not in listing

    # Table form.
    p = run("list", "--data-dir", data_dir)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["KEY-ID", "TENANT", "ACCOUNT", "ACCESS-KEY-ID", "RATE", "BURST",
                                "STATE", "CREATED"]
    assert len(lines) == 4
    row = lines[2].split()
    assert row[:6] == [a2["key_id"], "acme", a2["account_id"], a2["access_key_id"], "5/s", "10"]
    assert row[6] == "active"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", row[7])
    assert lines[1].split()[4:7] == ["default", "default", "active"]

    # Revoke.
    p = run("revoke", a1["key_id"], "--data-dir", data_dir)
    assert p.returncode == 0, p.stderr
    assert a1["key_id"] in p.stdout and "acme" in p.stdout and "revoked" in p.stdout
    p = run("revoke", a1["key_id"], "--json", "--data-dir", data_dir)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == {"revoked": a1["key_id"], "tenant": "acme"}
    p = run("revoke", a1["key_id"], "--data-dir", data_dir)
    assert p.returncode == 0 and "already revoked" in p.stdout
    states = {k["key_id"]: k["revoked"] for k in list_keys(data_dir)}
    assert states == {a1["key_id"]: True, a2["key_id"]: False, b["key_id"]: False}
    assert "revoked" in run("list", "--data-dir", data_dir).stdout.splitlines()[1]


def test_human_create_shows_secrets_once(data_dir):
    p = run("create", "--tenant", "acme", "--data-dir", data_dir)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "shown only once" in out
    api_key = re.search(r"rk_k[0-9a-f]{12}_[a-z2-7]{32}", out).group(0)
    akid = re.search(r"AKIA[A-Z2-7]{16}", out).group(0)
    secret = re.search(r"secret access key\s+(\S+)", out).group(1)
    assert SECRET_RE.match(secret)
    assert api_key not in p.stderr and secret not in p.stderr
    keys = list_keys(data_dir)
    assert keys[0]["access_key_id"] == akid


def test_secrets_not_in_db(data_dir):
    made = [create(data_dir, t) for t in ("acme", "acme", "beta")]
    raw = db_bytes(data_dir)
    assert raw, "auth.db is empty"
    for c in made:
        secret_part = c["api_key"].split("_", 2)[2]
        assert c["api_key"].encode() not in raw
        assert secret_part.encode() not in raw
        assert c["secret_access_key"].encode() not in raw
        assert c["access_key_id"].encode() in raw  # the check can see what is there
    # The server key file holds none of them either (it is 32 random bytes).
    with open(os.path.join(data_dir, "server.key"), "rb") as f:
        assert len(f.read()) == 32


def test_file_modes(data_dir):
    create(data_dir, "acme")
    st = os.stat(os.path.join(data_dir, "server.key"))
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_size == 32
    assert stat.S_IMODE(os.stat(os.path.join(data_dir, "auth.db")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir).st_mode) == 0o700


def test_world_readable_server_key_refused(data_dir):
    create(data_dir, "acme")
    key = os.path.join(data_dir, "server.key")
    os.chmod(key, 0o644)
    for args in (["list"], ["create", "--tenant", "acme"], ["revoke", "k000000000000"]):
        p = run(*args, "--data-dir", data_dir)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert "server.key" in p.stderr and "chmod 600" in p.stderr
        assert p.stdout == ""
    os.chmod(key, 0o600)
    assert len(list_keys(data_dir)) == 1


def test_missing_server_key_with_keys_refused(data_dir):
    c = create(data_dir, "acme")
    key = os.path.join(data_dir, "server.key")
    os.rename(key, key + ".away")
    p = run("create", "--tenant", "acme", "--data-dir", data_dir)
    assert p.returncode == 1 and "missing" in p.stderr, p.stderr
    assert not os.path.exists(key)
    os.rename(key + ".away", key)
    assert list_keys(data_dir)[0]["key_id"] == c["key_id"]


@pytest.mark.parametrize("tenant", ["", "a b", "a/b", "a.b", "x" * 65, "tenant!", "ü"])
def test_bad_tenant_name(data_dir, tenant):
    p = run("create", "--tenant", tenant, "--data-dir", data_dir)
    assert p.returncode == 2, p.stderr
    assert "invalid tenant name" in p.stderr
    assert p.stdout == ""
    assert list_keys(data_dir) == []


def test_good_tenant_names(data_dir):
    for t in ("A", "a_b-C9", "x" * 64):
        assert create(data_dir, t)["tenant"] == t


def test_unknown_key_id(data_dir):
    create(data_dir, "acme")
    for kid in ("k000000000000", "nope", "k' OR 1=1 --"):
        p = run("revoke", kid, "--data-dir", data_dir)
        assert p.returncode == 1, p.stderr
        assert "no key with id" in p.stderr
        assert p.stdout == ""
    assert all(not k["revoked"] for k in list_keys(data_dir))


@pytest.mark.parametrize("rate,want", [("10", 10), ("10/s", 10), ("0.5/s", 0.5), ("2.25", 2.25),
                                       ("1000000", 1000000)])
def test_rate_parsing(data_dir, rate, want):
    c = create(data_dir, "acme", "--rate", rate)
    k = [k for k in list_keys(data_dir) if k["key_id"] == c["key_id"]][0]
    assert k["rate"] == want


@pytest.mark.parametrize("rate", ["0", "-1", "abc", "10/m", "10/", "/s", "1e3", "inf", "nan",
                                  ".", "10 /s", "0x10", ""])
def test_bad_rate(data_dir, rate):
    p = run("create", "--tenant", "acme", "--rate", rate, "--data-dir", data_dir)
    assert p.returncode == 2, (rate, p.stderr)
    assert "--rate" in p.stderr


@pytest.mark.parametrize("burst", ["0", "0.5", "-3", "x", "5/s"])
def test_bad_burst(data_dir, burst):
    p = run("create", "--tenant", "acme", "--burst", burst, "--data-dir", data_dir)
    assert p.returncode == 2, (burst, p.stderr)
    assert "--burst" in p.stderr


def test_usage_errors(data_dir):
    cases = [
        [],
        ["frobnicate"],
        ["create", "--data-dir", data_dir],  # no --tenant
        ["create", "--tenant"],
        ["create", "--tenant", "a", "--bogus"],
        ["create", "--tenant", "a", "extra"],
        ["list", "--bogus"],
        ["list", "extra"],
        ["revoke"],
        ["revoke", "a", "b"],
        ["revoke", "a", "--bogus"],
    ]
    for args in cases:
        p = run(*args)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("realm keys"), (args, p.stderr)
        assert "Usage: realm keys" in p.stderr, (args, p.stderr)
    for args in (["--help"], ["create", "--help"], ["list", "-h"], ["revoke", "--help"]):
        p = run(*args)
        assert p.returncode == 0 and p.stdout.startswith("Usage: realm keys"), (args, p.stderr)
    # The top-level usage names the command.
    p = subprocess.run([realm_bin(), "--help"], capture_output=True, text=True)
    assert "keys" in p.stdout


def test_data_dir_resolution(tmp_path):
    # $REALM_DATA_DIR when --data-dir is absent; --data-dir wins over it.
    env_dir = str(tmp_path / "env")
    flag_dir = str(tmp_path / "flag")
    p = run("create", "--tenant", "e", "--json", env_data_dir=env_dir)
    assert p.returncode == 0, p.stderr
    assert os.path.exists(os.path.join(env_dir, "auth.db"))
    p = run("create", "--tenant", "f", "--json", "--data-dir", flag_dir, env_data_dir=env_dir)
    assert p.returncode == 0, p.stderr
    assert [k["tenant"] for k in list_keys(env_dir)] == ["e"]
    assert [k["tenant"] for k in list_keys(flag_dir)] == ["f"]
    # Neither: ./realm-data, like `realm serve`.
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    p = run("create", "--tenant", "g", "--json", cwd=str(cwd))
    assert p.returncode == 0, p.stderr
    assert os.path.exists(cwd / "realm-data" / "auth.db")
    p = run("list", "--json", cwd=str(cwd))
    assert [k["tenant"] for k in json.loads(p.stdout)] == ["g"]


def test_unusable_data_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    p = run("list", "--data-dir", str(blocker / "sub"))
    assert p.returncode == 1 and "data dir" in p.stderr, p.stderr


def test_concurrent_creates(data_dir):
    # Several CLIs at once on a fresh dir: one server.key wins, every key works.
    procs = [subprocess.Popen([realm_bin(), "keys", "create", "--tenant", f"t{i % 3}", "--json",
                               "--data-dir", data_dir], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(6)]
    outs = [p.communicate(timeout=60) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    made = [json.loads(out) for out, _ in outs]
    keys = list_keys(data_dir)
    assert len(keys) == 6
    accounts = {}
    for c in made:
        accounts.setdefault(c["tenant"], set()).add(c["account_id"])
    assert all(len(v) == 1 for v in accounts.values()), accounts
    assert not [n for n in os.listdir(data_dir) if n.startswith(".server.key")]
