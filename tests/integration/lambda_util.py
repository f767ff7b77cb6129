"""Helpers for the control API tests (test_70..test_73): code packages built in
memory, good and hostile; a boto3 Lambda client and an /usr/bin/aws runner
pointed at a server's control port (the client and the module-scoped server,
running(), are conftest's, re-exported here); error assertions.
"""
import base64
import hashlib
import io
import json
import os
import re
import subprocess
import tempfile
import warnings
import zipfile

import pytest
from botocore.exceptions import ClientError

from conftest import REGION, finish, lambda_client, running  # noqa: F401 (re-exported)

ACCOUNT = "000000000000"
ROLE = "arn:aws:iam::000000000000:role/test"
AWS_BIN = "/usr/bin/aws"
LAST_MODIFIED_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FIXED_TIME = (2024, 1, 1, 0, 0, 0)


def arn(name, region=REGION, account=ACCOUNT):
    return f"arn:aws:lambda:{region}:{account}:function:{name}"


def code_sha256(data):
    """Lambda's CodeSha256: base64 of the SHA-256 of the zip bytes."""
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def code_hex(data):
    return hashlib.sha256(data).hexdigest()


# ---- zips ---------------------------------------------------------------------------


def _info(name, mode=0o100644):
    zi = zipfile.ZipInfo(name, date_time=FIXED_TIME)
    zi.create_system = 3  # Unix, so external_attr's high bits are the st_mode
    zi.external_attr = mode << 16
    zi.compress_type = zipfile.ZIP_DEFLATED
    return zi


def make_zip(files, symlinks=(), compression=zipfile.ZIP_DEFLATED):
    """A zip from files (name -> str/bytes, in order; a list of pairs allows
    duplicates) and symlinks ((name, target) pairs, written after the files
    unless given inside files as ("name", ("symlink", target)))."""
    items = list(files.items()) if isinstance(files, dict) else list(files)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicate names warn
        with zipfile.ZipFile(buf, "w") as z:
            for name, data in items:
                if isinstance(data, tuple) and data[0] == "symlink":
                    _write_symlink(z, name, data[1])
                    continue
                zi = _info(name)
                zi.compress_type = compression
                z.writestr(zi, data)
            for name, target in symlinks:
                _write_symlink(z, name, target)
    return buf.getvalue()


def _write_symlink(z, name, target):
    zi = _info(name, 0o120777)
    zi.compress_type = zipfile.ZIP_STORED
    z.writestr(zi, target)


NODE_SRC = "exports.handler = async (event) => ({ ok: true, event });\n"
PY_SRC = "def handler(event, context):\n    return {'ok': True, 'event': event}\n"


def node_zip(tag=""):
    """A good Node package: index.js exporting handler (tag varies the bytes)."""
    return make_zip({"index.js": NODE_SRC + (f"// {tag}\n" if tag else "")})


def python_zip(tag=""):
    """A good Python package: app.py with handler, in a subdirectory too."""
    return make_zip({"app.py": PY_SRC + (f"# {tag}\n" if tag else ""),
                     "lib/util.py": "X = 1\n"})


def corrupt_crc_zip():
    """A stored entry whose data byte was flipped after the CRC was written."""
    payload = b"hello, this is the payload of a stored entry\n" * 4
    data = bytearray(make_zip({"index.js": NODE_SRC, "data.txt": payload},
                              compression=zipfile.ZIP_STORED))
    at = bytes(data).index(payload) + 10
    data[at] ^= 0x01
    return bytes(data)


def bomb_zip(size=20 * 1024 * 1024):
    """size bytes of zeros, deflated (about 20 KB of zip for 20 MB)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr(_info("index.js"), NODE_SRC)
        z.writestr(_info("zeros.bin"), bytes(size))
    return buf.getvalue()


def hostile_zips():
    """name -> (zip bytes, words of which one must be in the message (lower-case),
    entry name the message must mention or None). Servers must run with
    --max-code-entries 10 --max-code-unzipped-bytes 1MiB (HOSTILE_FLAGS)."""
    good = {"index.js": NODE_SRC}
    good_zip = node_zip()
    return {
        "dotdot": (make_zip({**good, "../evil.txt": "x"}), ["leaves the package"], "../evil.txt"),
        "absolute": (make_zip({**good, "/abs.txt": "x"}), ["absolute", "leaves the package"],
                     "/abs.txt"),
        "inner_dotdot": (make_zip({**good, "a/../../x": "x"}), ["leaves the package"],
                         "a/../../x"),
        "symlink_abs": (make_zip(good, symlinks=[("passwd", "/etc/passwd")]), ["symlink"],
                        "passwd"),
        "symlink_up": (make_zip(good, symlinks=[("up", "../..")]), ["symlink"], "up"),
        "symlink_chain": (make_zip(good, symlinks=[("q", "."), ("p", "q/..")]), ["symlink"],
                          "p"),
        "beneath_symlink": (make_zip([("index.js", NODE_SRC), ("d", ("symlink", "sub")),
                                      ("sub/x.txt", "x"), ("d/y.txt", "y")]),
                            ["symlink"], "d/y.txt"),
        "duplicate": (make_zip([("index.js", NODE_SRC), ("a.txt", "1"), ("a.txt", "2")]),
                      ["two entries", "duplicate"], "a.txt"),
        "too_many": (make_zip({**good, **{f"f{i:02}.txt": str(i) for i in range(10)}}),
                     ["entries"], None),
        "bomb": (bomb_zip(), ["unzips to more than", "bytes"], None),
        "crc": (corrupt_crc_zip(), ["crc", "corrupt"], "data.txt"),
        "truncated": (good_zip[: len(good_zip) // 2], ["not a valid zip", "corrupt", "truncated"],
                      None),
        "not_a_zip": (b"this is plainly not a zip file\n" * 8, ["not a valid zip"], None),
    }


HOSTILE_FLAGS = ("--max-code-entries", "10", "--max-code-unzipped-bytes", "1MiB")


def write_zip(data, directory=None):
    """Writes zip bytes to a temp file (for fileb://) and returns its path."""
    fd, path = tempfile.mkstemp(suffix=".zip", dir=directory)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


# ---- clients ------------------------------------------------------------------------


def aws(server, *args, timeout=60):
    """Runs /usr/bin/aws against the server's control port: (rc, parsed JSON or
    None, stderr)."""
    with tempfile.TemporaryDirectory(prefix="realm-aws-") as home:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": home,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_PAGER": "",
            "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
            "AWS_MAX_ATTEMPTS": "1",
            "LANG": "C.UTF-8",
        }
        p = subprocess.run(
            [AWS_BIN, "--endpoint-url", f"http://127.0.0.1:{server.ports['control']}",
             "--region", REGION, "--output", "json", *args],
            capture_output=True, text=True, env=env, timeout=timeout)
    out = json.loads(p.stdout) if p.stdout.strip() else None
    return p.returncode, out, p.stderr


# ---- assertions ---------------------------------------------------------------------


def check_error(e, code, status):
    """Checks a ClientError's type, status and request id; returns its message."""
    r = e.response
    assert r["Error"]["Code"] == code, r
    assert r["ResponseMetadata"]["HTTPStatusCode"] == status, r
    headers = r["ResponseMetadata"]["HTTPHeaders"]
    assert headers.get("x-amzn-requestid"), headers
    assert headers.get("x-amzn-errortype", "").split(":")[0] == code, headers
    msg = r["Error"].get("Message", "")
    assert len(msg) >= 10, f"unhelpful message {msg!r}"
    return msg


def expect_error(call, code, status, *words, **kwargs):
    """call(**kwargs) must raise ClientError code/status with every word (case-
    insensitive) in its message; returns the message."""
    with pytest.raises(ClientError) as ei:
        call(**kwargs)
    msg = check_error(ei.value, code, status)
    for w in words:
        assert w.lower() in msg.lower(), f"{w!r} not in {msg!r}"
    return msg


def create(lam, name, zip_bytes=None, runtime="nodejs20.x", handler="index.handler", **kw):
    return lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
                               Code={"ZipFile": zip_bytes if zip_bytes is not None else node_zip()},
                               **kw)


# ---- data dir -----------------------------------------------------------------------


def package_listing(data_dir):
    """(zip files, package dirs, staging entries) in DATA_DIR/packages."""
    root = os.path.join(data_dir, "packages")
    zips, dirs, staging = [], [], []
    if not os.path.isdir(root):
        return zips, dirs, staging
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name == ".staging":
            staging = sorted(os.listdir(path))
        elif name.endswith(".zip"):
            zips.append(name)
        elif os.path.isdir(path):
            dirs.append(name)
    return zips, dirs, staging
