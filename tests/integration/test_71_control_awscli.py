"""The control API through the real AWS CLI (/usr/bin/aws lambda ...): a
function's whole life, the CLI's pagination, waiters and an error. Each aws
run costs about a second, so the lifecycle is one test."""
import pytest

from lambda_util import (ROLE, arn, aws, code_sha256, create, lambda_client, node_zip,
                         running, write_zip)


@pytest.fixture(scope="module")
def srv():
    with running() as s:
        yield s


@pytest.fixture
def zipdir(tmp_path):
    return str(tmp_path)


def ok(result):
    rc, out, err = result
    assert rc == 0, f"aws failed ({rc}): {err}"
    return out


def test_lifecycle(srv, zipdir):
    z1, z2 = node_zip("cli-1"), node_zip("cli-2")
    p1, p2 = write_zip(z1, zipdir), write_zip(z2, zipdir)

    c = ok(aws(srv, "lambda", "create-function", "--function-name", "cli-fn",
               "--runtime", "nodejs20.x", "--handler", "index.handler", "--role", ROLE,
               "--zip-file", f"fileb://{p1}"))
    assert c["FunctionName"] == "cli-fn" and c["FunctionArn"] == arn("cli-fn")
    assert c["CodeSha256"] == code_sha256(z1) and c["CodeSize"] == len(z1)
    assert (c["State"], c["Version"], c["Timeout"], c["MemorySize"]) == ("Active", "$LATEST", 3,
                                                                          128)

    assert ok(aws(srv, "lambda", "wait", "function-active-v2", "--function-name", "cli-fn")) \
        is None

    g = ok(aws(srv, "lambda", "get-function", "--function-name", "cli-fn"))
    assert g["Configuration"] == c
    assert g["Code"]["Location"].endswith(".zip")

    u = ok(aws(srv, "lambda", "update-function-code", "--function-name", "cli-fn",
               "--zip-file", f"fileb://{p2}"))
    assert u["CodeSha256"] == code_sha256(z2) and u["RevisionId"] != c["RevisionId"]
    ok(aws(srv, "lambda", "wait", "function-updated-v2", "--function-name", "cli-fn"))

    cfg = ok(aws(srv, "lambda", "update-function-configuration", "--function-name", "cli-fn",
                 "--timeout", "30", "--memory-size", "256", "--description", "from the cli",
                 "--environment", "Variables={GREETING=hello,LEVEL=3}"))
    assert (cfg["Timeout"], cfg["MemorySize"], cfg["Description"]) == (30, 256, "from the cli")
    assert cfg["Environment"] == {"Variables": {"GREETING": "hello", "LEVEL": "3"}}

    v = ok(aws(srv, "lambda", "publish-version", "--function-name", "cli-fn"))
    assert v["Version"] == "1" and v["Timeout"] == 30

    a = ok(aws(srv, "lambda", "create-alias", "--function-name", "cli-fn", "--name", "live",
               "--function-version", "1"))
    assert a["AliasArn"] == arn("cli-fn") + ":live" and a["FunctionVersion"] == "1"

    pc = ok(aws(srv, "lambda", "put-function-concurrency", "--function-name", "cli-fn",
                "--reserved-concurrent-executions", "5"))
    assert pc == {"ReservedConcurrentExecutions": 5}

    assert ok(aws(srv, "lambda", "tag-resource", "--resource", arn("cli-fn"),
                  "--tags", "team=core,env=ci")) is None
    t = ok(aws(srv, "lambda", "list-tags", "--resource", arn("cli-fn")))
    assert t == {"Tags": {"team": "core", "env": "ci"}}

    assert ok(aws(srv, "lambda", "delete-function", "--function-name", "cli-fn")) is None
    rc, out, err = aws(srv, "lambda", "get-function", "--function-name", "cli-fn")
    assert rc != 0 and out is None
    assert "ResourceNotFoundException" in err and "cli-fn" in err, err


def test_list_functions_pagination(server):
    lam = lambda_client(server)
    names = [f"cli-page-{i}" for i in range(5)]
    z = node_zip("cli-page")
    for n in reversed(names):
        create(lam, n, z)

    first = ok(aws(server, "lambda", "list-functions", "--max-items", "2", "--page-size", "2"))
    assert [f["FunctionName"] for f in first["Functions"]] == names[:2]
    assert first["NextToken"]
    rest = ok(aws(server, "lambda", "list-functions", "--max-items", "2", "--page-size", "2",
                  "--starting-token", first["NextToken"]))
    assert [f["FunctionName"] for f in rest["Functions"]] == names[2:4]
    # Without --max-items the CLI follows NextMarker to the end, 2 a page.
    every = ok(aws(server, "lambda", "list-functions", "--page-size", "2"))
    assert [f["FunctionName"] for f in every["Functions"]] == names
    assert "NextToken" not in every


def test_errors(srv, zipdir):
    p = write_zip(node_zip("cli-bad"), zipdir)
    rc, out, err = aws(srv, "lambda", "create-function", "--function-name", "cli-bad",
                       "--runtime", "cobol85", "--handler", "index.handler", "--role", ROLE,
                       "--zip-file", f"fileb://{p}")
    assert rc != 0 and out is None
    assert "InvalidParameterValueException" in err and "nodejs20.x" in err, err
    rc, out, err = aws(srv, "lambda", "delete-function", "--function-name", "cli-never")
    assert rc != 0
    assert "ResourceNotFoundException" in err, err
