"""The control API through boto3: every operation in docs/control-api.md, the
shapes botocore parses, paging, qualifiers and ARNs, versions, aliases,
concurrency, tags, waiters, and the errors (type, status, request id, a
helpful message)."""
import random
import urllib.error
import urllib.request

import pytest
from botocore.exceptions import ClientError

from lambda_util import (ACCOUNT, LAST_MODIFIED_RE, ROLE, UUID_RE, arn, check_error,
                         code_sha256, create, expect_error, lambda_client, node_zip, python_zip,
                         running)


@pytest.fixture(scope="module")
def srv():
    with running() as s:
        yield s


@pytest.fixture(scope="module")
def lam(srv):
    return lambda_client(srv)


@pytest.fixture(scope="module")
def lam_raw(srv):
    """A client that does not validate parameters itself (min values are
    checked by botocore; here the server must refuse them)."""
    return lambda_client(srv, validate=False)


def strip(resp):
    resp = dict(resp)
    resp.pop("ResponseMetadata", None)
    return resp


def exists(lam, name):
    try:
        lam.get_function(FunctionName=name)
        return True
    except ClientError as e:
        check_error(e, "ResourceNotFoundException", 404)
        return False


# ---- create / get -------------------------------------------------------------------


def test_create_function_fields(lam):
    z = node_zip("fields")
    r = create(lam, "fields", z, Description="the fields test",
               Environment={"Variables": {"GREETING": "hi", "LEVEL": "2"}})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert r["ResponseMetadata"]["RequestId"]
    assert r["FunctionName"] == "fields"
    assert r["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:fields"
    assert r["Runtime"] == "nodejs20.x"
    assert r["Handler"] == "index.handler"
    assert r["Role"] == ROLE
    assert r["Description"] == "the fields test"
    assert r["CodeSha256"] == code_sha256(z)
    assert r["CodeSize"] == len(z)
    assert r["Timeout"] == 3 and r["MemorySize"] == 128
    assert LAST_MODIFIED_RE.match(r["LastModified"]), r["LastModified"]
    assert r["Version"] == "$LATEST"
    assert r["State"] == "Active"
    assert r["LastUpdateStatus"] == "Successful"
    assert UUID_RE.match(r["RevisionId"]), r["RevisionId"]
    assert r["PackageType"] == "Zip"
    assert r["Architectures"] == ["x86_64"]
    assert r["EphemeralStorage"] == {"Size": 512}
    assert r["Environment"] == {"Variables": {"GREETING": "hi", "LEVEL": "2"}}
    # What GetFunctionConfiguration reads back is what CreateFunction answered.
    assert strip(lam.get_function_configuration(FunctionName="fields")) == strip(r)


def test_create_without_environment_has_no_variables(lam):
    r = create(lam, "no-env", node_zip("noenv"))
    assert "Variables" not in r.get("Environment", {}), r


def test_create_python_function(lam):
    z = python_zip("py")
    r = create(lam, "py-fn", z, runtime="python3.11", handler="app.handler", Timeout=30,
               MemorySize=256)
    assert r["Runtime"] == "python3.11" and r["Handler"] == "app.handler"
    assert r["Timeout"] == 30 and r["MemorySize"] == 256
    assert r["CodeSha256"] == code_sha256(z) and r["CodeSize"] == len(z)


def test_create_provided_runtime_without_handler(lam):
    r = lam.create_function(FunctionName="prov", Runtime="provided.al2023", Role=ROLE,
                            Code={"ZipFile": node_zip("prov")})
    assert r["Runtime"] == "provided.al2023"


def test_get_function(lam):
    z = node_zip("get")
    c = create(lam, "getter", z, Tags={"team": "core", "env": "test"})
    r = lam.get_function(FunctionName="getter")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["Configuration"] == strip(c)
    assert r["Tags"] == {"team": "core", "env": "test"}
    assert "Concurrency" not in r
    loc = r["Code"]["Location"]
    assert loc.startswith("http://"), loc
    with urllib.request.urlopen(loc, timeout=10) as f:
        assert f.status == 200
        assert f.read() == z


def test_package_download_unknown_hash(srv):
    url = f"http://127.0.0.1:{srv.ports['control']}/realm/packages/{'0' * 64}.zip"
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(url, timeout=10)
    assert ei.value.code == 404
    assert ei.value.headers["x-amzn-ErrorType"].startswith("ResourceNotFoundException")


def test_get_missing_function(lam):
    msg = expect_error(lam.get_function, "ResourceNotFoundException", 404,
                       FunctionName="nobody-here")
    assert "nobody-here" in msg
    expect_error(lam.get_function_configuration, "ResourceNotFoundException", 404,
                 FunctionName="nobody-here")


# ---- listing ------------------------------------------------------------------------


def test_list_functions_paging(server):
    lam = lambda_client(server)
    names = [f"page-{i:02}" for i in range(53)]
    order = names[:]
    random.Random(7).shuffle(order)  # name order is the server's job, not creation order
    z = node_zip("paging")
    for n in order:
        create(lam, n, z)

    # The paginator, with the server's default page size.
    seen, pages = [], 0
    for page in lam.get_paginator("list_functions").paginate():
        assert len(page["Functions"]) <= 50
        seen += [f["FunctionName"] for f in page["Functions"]]
        pages += 1
    assert seen == names
    assert pages >= 2

    # MaxItems above 50 is 50.
    r = lam.list_functions(MaxItems=100)
    assert len(r["Functions"]) == 50 and r["NextMarker"]

    # Manual paging, 10 at a time.
    seen, sizes, kw = [], [], {"MaxItems": 10}
    while True:
        r = lam.list_functions(**kw)
        sizes.append(len(r["Functions"]))
        seen += [f["FunctionName"] for f in r["Functions"]]
        if not r.get("NextMarker"):
            break
        kw["Marker"] = r["NextMarker"]
        assert len(sizes) < 10, "paging does not end"
    assert seen == names
    assert sizes == [10, 10, 10, 10, 10, 3]

    # Every listed configuration is a whole one.
    f = lam.list_functions(MaxItems=1)["Functions"][0]
    assert f["FunctionArn"] == arn("page-00") and f["CodeSha256"] == code_sha256(z)


# ---- updates ------------------------------------------------------------------------


def test_update_function_code(lam):
    z1, z2 = node_zip("code-1"), node_zip("code-2, a longer one")
    c = create(lam, "coder", z1)
    r = lam.update_function_code(FunctionName="coder", ZipFile=z2)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["CodeSha256"] == code_sha256(z2) != c["CodeSha256"]
    assert r["CodeSize"] == len(z2)
    assert r["RevisionId"] != c["RevisionId"] and UUID_RE.match(r["RevisionId"])
    assert r["LastUpdateStatus"] == "Successful"
    assert r["Version"] == "$LATEST"
    g = lam.get_function(FunctionName="coder")
    assert g["Configuration"] == strip(r)
    with urllib.request.urlopen(g["Code"]["Location"], timeout=10) as f:
        assert f.read() == z2
    # RevisionId must match when given.
    expect_error(lam.update_function_code, "PreconditionFailedException", 412,
                 FunctionName="coder", ZipFile=z1, RevisionId=c["RevisionId"])
    assert lam.get_function_configuration(FunctionName="coder")["CodeSha256"] == code_sha256(z2)
    expect_error(lam.update_function_code, "ResourceNotFoundException", 404,
                 FunctionName="no-such-coder", ZipFile=z1)
    expect_error(lam.update_function_code, "InvalidParameterValueException", 400, "S3Bucket",
                 FunctionName="coder", S3Bucket="bucket", S3Key="key.zip")


def test_update_function_configuration(lam, lam_raw):
    c = create(lam, "configured", node_zip("cfg"))
    r = lam.update_function_configuration(
        FunctionName="configured", Environment={"Variables": {"MODE": "fast"}}, Timeout=60,
        MemorySize=512, Description="updated")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert r["Environment"] == {"Variables": {"MODE": "fast"}}
    assert (r["Timeout"], r["MemorySize"], r["Description"]) == (60, 512, "updated")
    assert r["CodeSha256"] == c["CodeSha256"]
    assert r["RevisionId"] != c["RevisionId"]
    assert strip(lam.get_function_configuration(FunctionName="configured")) == strip(r)

    expect_error(lam.update_function_configuration, "PreconditionFailedException", 412,
                 FunctionName="configured", Timeout=10, RevisionId=c["RevisionId"])
    ok = lam.update_function_configuration(FunctionName="configured", Timeout=10,
                                           RevisionId=r["RevisionId"])
    assert ok["Timeout"] == 10 and ok["RevisionId"] != r["RevisionId"]

    # Refused changes change nothing.
    expect_error(lam.update_function_configuration, "InvalidParameterValueException", 400,
                 "Timeout", FunctionName="configured", Timeout=901)
    expect_error(lam_raw.update_function_configuration, "InvalidParameterValueException", 400,
                 "MemorySize", FunctionName="configured", MemorySize=64)
    expect_error(lam.update_function_configuration, "InvalidParameterValueException", 400,
                 "AWS_LAMBDA_FUNCTION_NAME", FunctionName="configured",
                 Environment={"Variables": {"AWS_LAMBDA_FUNCTION_NAME": "x"}})
    assert strip(lam.get_function_configuration(FunctionName="configured")) == strip(ok)
    expect_error(lam.update_function_configuration, "ResourceNotFoundException", 404,
                 FunctionName="not-configured", Timeout=5)


# ---- versions -----------------------------------------------------------------------


def test_publish_version(lam):
    c = create(lam, "versioned", node_zip("ver"))
    v1 = lam.publish_version(FunctionName="versioned", Description="first")
    assert v1["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert v1["Version"] == "1"
    assert v1["FunctionArn"] == arn("versioned") + ":1"
    assert v1["CodeSha256"] == c["CodeSha256"]
    # Nothing changed: the same version again.
    again = lam.publish_version(FunctionName="versioned")
    assert again["Version"] == "1"
    lam.update_function_configuration(FunctionName="versioned", Timeout=9)
    v2 = lam.publish_version(FunctionName="versioned")
    assert v2["Version"] == "2" and v2["Timeout"] == 9

    expect_error(lam.publish_version, "InvalidParameterValueException", 400, "CodeSha256",
                 FunctionName="versioned", CodeSha256=code_sha256(b"other bytes"))
    expect_error(lam.publish_version, "PreconditionFailedException", 412,
                 FunctionName="versioned", RevisionId=c["RevisionId"])
    expect_error(lam.publish_version, "ResourceNotFoundException", 404,
                 FunctionName="never-versioned")

    vs = lam.list_versions_by_function(FunctionName="versioned")["Versions"]
    assert [v["Version"] for v in vs] == ["$LATEST", "1", "2"]
    assert vs[1]["Timeout"] == 3 and vs[2]["Timeout"] == 9
    assert vs[0]["FunctionArn"] == arn("versioned") + ":$LATEST"

    allv = [f["Version"] for page in
            lam.get_paginator("list_functions").paginate(FunctionVersion="ALL")
            for f in page["Functions"] if f["FunctionName"] == "versioned"]
    assert allv == ["$LATEST", "1", "2"]
    # Without FunctionVersion=ALL, only $LATEST.
    latest = [f["Version"] for page in lam.get_paginator("list_functions").paginate()
              for f in page["Functions"] if f["FunctionName"] == "versioned"]
    assert latest == ["$LATEST"]


def test_create_and_update_code_with_publish(lam):
    r = create(lam, "pub-on-create", node_zip("poc-1"), Publish=True)
    assert r["Version"] == "1"
    u = lam.update_function_code(FunctionName="pub-on-create", ZipFile=node_zip("poc-2"),
                                 Publish=True)
    assert u["Version"] == "2" and u["CodeSha256"] == code_sha256(node_zip("poc-2"))
    vs = lam.list_versions_by_function(FunctionName="pub-on-create")["Versions"]
    assert [v["Version"] for v in vs] == ["$LATEST", "1", "2"]


def test_qualifier_and_name_forms(lam):
    create(lam, "forms", node_zip("forms"))
    lam.publish_version(FunctionName="forms")
    lam.update_function_configuration(FunctionName="forms", Timeout=20)
    full, partial = arn("forms"), f"{ACCOUNT}:function:forms"

    r = lam.get_function(FunctionName="forms", Qualifier="1")["Configuration"]
    assert r["Version"] == "1" and r["Timeout"] == 3
    assert r["FunctionArn"] == full + ":1"
    for name in ("forms:1", partial + ":1", full + ":1"):
        c = lam.get_function(FunctionName=name)["Configuration"]
        assert (c["Version"], c["Timeout"]) == ("1", 3), name
        c = lam.get_function_configuration(FunctionName=name)
        assert (c["Version"], c["Timeout"]) == ("1", 3), name
    for name in ("forms", partial, full, "forms:$LATEST"):
        c = lam.get_function(FunctionName=name)["Configuration"]
        assert (c["FunctionName"], c["Version"], c["Timeout"]) == ("forms", "$LATEST", 20), name
    assert lam.get_function(FunctionName="forms", Qualifier="$LATEST")["Configuration"][
        "Timeout"] == 20

    for name in (arn("forms", account="111111111111"), arn("forms", region="eu-west-1"),
                 "111111111111:function:forms"):
        expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName=name)
    expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName="forms",
                 Qualifier="7")
    expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName="forms:nope")
    # A qualifier in the name and in ?Qualifier= must agree.
    expect_error(lam.get_function, "InvalidParameterValueException", 400,
                 FunctionName="forms:1", Qualifier="$LATEST")
    assert lam.get_function(FunctionName="forms:1", Qualifier="1")["Configuration"][
        "Version"] == "1"


# ---- aliases ------------------------------------------------------------------------


def test_alias_lifecycle(lam):
    create(lam, "aliased", node_zip("alias"))
    lam.publish_version(FunctionName="aliased")
    lam.update_function_configuration(FunctionName="aliased", MemorySize=256)
    lam.publish_version(FunctionName="aliased")

    a = lam.create_alias(FunctionName="aliased", Name="live", FunctionVersion="1",
                         Description="prod",
                         RoutingConfig={"AdditionalVersionWeights": {"2": 0.25}})
    assert a["ResponseMetadata"]["HTTPStatusCode"] == 201
    assert a["AliasArn"] == arn("aliased") + ":live"
    assert (a["Name"], a["FunctionVersion"], a["Description"]) == ("live", "1", "prod")
    assert a["RoutingConfig"] == {"AdditionalVersionWeights": {"2": 0.25}}
    assert UUID_RE.match(a["RevisionId"])
    assert strip(lam.get_alias(FunctionName="aliased", Name="live")) == strip(a)

    b = lam.create_alias(FunctionName="aliased", Name="beta", FunctionVersion="$LATEST")
    assert b["FunctionVersion"] == "$LATEST"

    u = lam.update_alias(FunctionName="aliased", Name="live", FunctionVersion="2",
                         RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})
    assert u["FunctionVersion"] == "2"
    assert u["RoutingConfig"] == {"AdditionalVersionWeights": {"1": 0.5}}
    assert u["RevisionId"] != a["RevisionId"]
    expect_error(lam.update_alias, "PreconditionFailedException", 412, FunctionName="aliased",
                 Name="live", Description="x", RevisionId=a["RevisionId"])

    names = [x["Name"] for x in lam.list_aliases(FunctionName="aliased")["Aliases"]]
    assert names == ["beta", "live"]
    only2 = lam.list_aliases(FunctionName="aliased", FunctionVersion="2")["Aliases"]
    assert [x["Name"] for x in only2] == ["live"]

    # An alias as a qualifier resolves to its version.
    c = lam.get_function(FunctionName="aliased", Qualifier="live")["Configuration"]
    assert (c["Version"], c["MemorySize"]) == ("2", 256)
    c = lam.get_function_configuration(FunctionName="aliased:live")
    assert c["Version"] == "2"
    assert c["FunctionArn"] == arn("aliased") + ":live"

    r = lam.delete_alias(FunctionName="aliased", Name="beta")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(lam.get_alias, "ResourceNotFoundException", 404, FunctionName="aliased",
                 Name="beta")
    expect_error(lam.delete_alias, "ResourceNotFoundException", 404, FunctionName="aliased",
                 Name="beta")
    assert [x["Name"] for x in lam.list_aliases(FunctionName="aliased")["Aliases"]] == ["live"]


def test_alias_errors(lam):
    create(lam, "alias-err", node_zip("alias-err"))
    lam.publish_version(FunctionName="alias-err")
    lam.update_function_configuration(FunctionName="alias-err", Timeout=5)
    lam.publish_version(FunctionName="alias-err")
    lam.create_alias(FunctionName="alias-err", Name="prod", FunctionVersion="1")

    expect_error(lam.create_alias, "ResourceConflictException", 409, FunctionName="alias-err",
                 Name="prod", FunctionVersion="2")
    expect_error(lam.create_alias, "ResourceNotFoundException", 404, FunctionName="alias-err",
                 Name="ghost", FunctionVersion="9")
    expect_error(lam.create_alias, "ResourceNotFoundException", 404, FunctionName="no-fn",
                 Name="x", FunctionVersion="1")
    expect_error(lam.create_alias, "InvalidParameterValueException", 400,
                 FunctionName="alias-err", Name="heavy", FunctionVersion="1",
                 RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}})
    # Routing needs a published version on both sides, and at most one extra.
    expect_error(lam.create_alias, "InvalidParameterValueException", 400,
                 FunctionName="alias-err", Name="onlatest", FunctionVersion="$LATEST",
                 RoutingConfig={"AdditionalVersionWeights": {"1": 0.1}})
    expect_error(lam.create_alias, "InvalidParameterValueException", 400,
                 FunctionName="alias-err", Name="12345", FunctionVersion="1")
    names = [x["Name"] for x in lam.list_aliases(FunctionName="alias-err")["Aliases"]]
    assert names == ["prod"]


def test_delete_versions(lam):
    create(lam, "del-ver", node_zip("del-ver"))
    lam.publish_version(FunctionName="del-ver")
    lam.update_function_configuration(FunctionName="del-ver", Timeout=4)
    lam.publish_version(FunctionName="del-ver")
    lam.create_alias(FunctionName="del-ver", Name="pinned", FunctionVersion="1")

    expect_error(lam.delete_function, "ResourceConflictException", 409, FunctionName="del-ver",
                 Qualifier="1")
    expect_error(lam.delete_function, "InvalidParameterValueException", 400,
                 FunctionName="del-ver", Qualifier="$LATEST")
    r = lam.delete_function(FunctionName="del-ver", Qualifier="2")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName="del-ver",
                 Qualifier="2")
    vs = lam.list_versions_by_function(FunctionName="del-ver")["Versions"]
    assert [v["Version"] for v in vs] == ["$LATEST", "1"]
    # Numbers are never reused.
    lam.update_function_configuration(FunctionName="del-ver", Timeout=6)
    assert lam.publish_version(FunctionName="del-ver")["Version"] == "3"


# ---- concurrency and account --------------------------------------------------------


def test_concurrency_and_account_settings(lam):
    create(lam, "conc-a", node_zip("conc"))
    create(lam, "conc-b", node_zip("conc"))
    g = lam.get_function_concurrency(FunctionName="conc-a")
    assert g["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert "ReservedConcurrentExecutions" not in g

    acct = lam.get_account_settings()
    assert acct["AccountLimit"]["ConcurrentExecutions"] == 100
    assert acct["AccountLimit"]["UnreservedConcurrentExecutions"] == 100
    assert acct["AccountLimit"]["CodeSizeZipped"] == 50 * 1024 * 1024
    assert acct["AccountLimit"]["CodeSizeUnzipped"] == 250 * 1024 * 1024
    nfun = sum(len(p["Functions"]) for p in lam.get_paginator("list_functions").paginate())
    assert acct["AccountUsage"]["FunctionCount"] == nfun

    p = lam.put_function_concurrency(FunctionName="conc-a", ReservedConcurrentExecutions=30)
    assert p["ReservedConcurrentExecutions"] == 30
    assert lam.get_function_concurrency(FunctionName="conc-a")[
        "ReservedConcurrentExecutions"] == 30
    assert lam.get_function(FunctionName="conc-a")["Concurrency"] == {
        "ReservedConcurrentExecutions": 30}
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 70

    expect_error(lam.put_function_concurrency, "InvalidParameterValueException", 400,
                 FunctionName="conc-b", ReservedConcurrentExecutions=101)
    # The sum over functions cannot exceed the limit.
    expect_error(lam.put_function_concurrency, "InvalidParameterValueException", 400,
                 FunctionName="conc-b", ReservedConcurrentExecutions=71)
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(
        FunctionName="conc-b")
    assert lam.put_function_concurrency(FunctionName="conc-b", ReservedConcurrentExecutions=70)[
        "ReservedConcurrentExecutions"] == 70
    assert lam.put_function_concurrency(FunctionName="conc-b", ReservedConcurrentExecutions=0)[
        "ReservedConcurrentExecutions"] == 0
    expect_error(lam.put_function_concurrency, "ResourceNotFoundException", 404,
                 FunctionName="conc-none", ReservedConcurrentExecutions=1)

    for name in ("conc-a", "conc-b"):
        d = lam.delete_function_concurrency(FunctionName=name)
        assert d["ResponseMetadata"]["HTTPStatusCode"] == 204
        g = lam.get_function_concurrency(FunctionName=name)
        assert "ReservedConcurrentExecutions" not in g
    assert "Concurrency" not in lam.get_function(FunctionName="conc-a")
    assert lam.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"] == 100


# ---- tags ---------------------------------------------------------------------------


def test_tags(lam):
    create(lam, "tagged", node_zip("tags"), Tags={"owner": "me"})
    res = arn("tagged")
    assert lam.list_tags(Resource=res)["Tags"] == {"owner": "me"}
    r = lam.tag_resource(Resource=res, Tags={"a": "1", "b": "2"})
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=res)["Tags"] == {"owner": "me", "a": "1", "b": "2"}
    lam.tag_resource(Resource=res, Tags={"a": "one"})
    r = lam.untag_resource(Resource=res, TagKeys=["b", "owner"])
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert lam.list_tags(Resource=res)["Tags"] == {"a": "one"}
    assert lam.get_function(FunctionName="tagged")["Tags"] == {"a": "one"}

    expect_error(lam.tag_resource, "InvalidParameterValueException", 400, Resource=res,
                 Tags={"aws:reserved": "x"})
    expect_error(lam.tag_resource, "InvalidParameterValueException", 400, Resource=res,
                 Tags={"k": "v" * 257})
    expect_error(lam.tag_resource, "InvalidParameterValueException", 400, Resource=res,
                 Tags={f"k{i}": "v" for i in range(50)})  # 51 with "a"
    expect_error(lam.tag_resource, "InvalidParameterValueException", 400,
                 Resource=res + ":1", Tags={"x": "y"})
    expect_error(lam.list_tags, "ResourceNotFoundException", 404, Resource=arn("untagged-ghost"))
    assert lam.list_tags(Resource=res)["Tags"] == {"a": "one"}


# ---- delete -------------------------------------------------------------------------


def test_delete_function(lam):
    create(lam, "doomed", node_zip("doomed"), Tags={"x": "y"})
    lam.publish_version(FunctionName="doomed")
    lam.create_alias(FunctionName="doomed", Name="live", FunctionVersion="1")
    r = lam.delete_function(FunctionName="doomed")
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert r["ResponseMetadata"]["RequestId"]
    msg = expect_error(lam.get_function, "ResourceNotFoundException", 404, FunctionName="doomed")
    assert "doomed" in msg
    for call, kw in ((lam.get_function, {"Qualifier": "1"}),
                     (lam.list_versions_by_function, {}), (lam.list_aliases, {}),
                     (lam.delete_function, {})):
        expect_error(call, "ResourceNotFoundException", 404, FunctionName="doomed", **kw)
    expect_error(lam.get_alias, "ResourceNotFoundException", 404, FunctionName="doomed",
                 Name="live")
    # The name can be used again, from scratch.
    c = create(lam, "doomed", node_zip("reborn"))
    assert [v["Version"] for v in
            lam.list_versions_by_function(FunctionName="doomed")["Versions"]] == ["$LATEST"]
    assert "Tags" not in lam.get_function(FunctionName="doomed")
    assert c["Version"] == "$LATEST"
    lam.update_function_configuration(FunctionName="doomed", Timeout=8)
    assert lam.publish_version(FunctionName="doomed")["Version"] == "1"


def test_delete_by_arn(lam):
    create(lam, "doomed-arn", node_zip("doomed-arn"))
    lam.delete_function(FunctionName=arn("doomed-arn"))
    assert not exists(lam, "doomed-arn")


# ---- waiters ------------------------------------------------------------------------


def test_waiters(lam):
    create(lam, "waited", node_zip("wait-1"))
    fast = {"Delay": 1, "MaxAttempts": 5}
    lam.get_waiter("function_active_v2").wait(FunctionName="waited", WaiterConfig=fast)
    lam.update_function_code(FunctionName="waited", ZipFile=node_zip("wait-2"))
    lam.get_waiter("function_updated_v2").wait(FunctionName="waited", WaiterConfig=fast)
    c = lam.get_function_configuration(FunctionName="waited")
    assert (c["State"], c["LastUpdateStatus"]) == ("Active", "Successful")
    assert c["CodeSha256"] == code_sha256(node_zip("wait-2"))


# ---- bad input ----------------------------------------------------------------------

BAD_CREATES = {
    "unknown_runtime": ({"Runtime": "nodejs4.3"}, ["nodejs4.3", "nodejs20.x", "python3.11"]),
    "timeout_0": ({"Timeout": 0}, ["Timeout"]),
    "timeout_901": ({"Timeout": 901}, ["Timeout", "900"]),
    "memory_127": ({"MemorySize": 127}, ["MemorySize", "128"]),
    "memory_10241": ({"MemorySize": 10241}, ["MemorySize", "10240"]),
    "bad_name": ({"FunctionName": "bad name!"}, []),
    "long_name": ({"FunctionName": "n" * 65}, []),
    "reserved_env": ({"Environment": {"Variables": {"AWS_REGION": "eu-west-1"}}},
                     ["AWS_REGION", "reserved"]),
    "bad_env_name": ({"Environment": {"Variables": {"1BAD": "x"}}}, ["1BAD"]),
    "big_env": ({"Environment": {"Variables": {"BIG": "x" * 5000}}}, []),
    "layers": ({"Layers": ["arn:aws:lambda:us-east-1:000000000000:layer:l:1"]}, ["Layers"]),
    "arm64": ({"Architectures": ["arm64"]}, ["arm64", "x86_64"]),
    "image": ({"PackageType": "Image", "Code": {"ImageUri": "x/y:1"}}, ["Image"]),
    "s3": ({"Code": {"S3Bucket": "bucket", "S3Key": "key.zip"}}, ["S3Bucket"]),
    "no_handler": ({"Handler": None}, ["Handler"]),
    "ephemeral_small": ({"EphemeralStorage": {"Size": 256}}, ["EphemeralStorage"]),
    "long_description": ({"Description": "d" * 257}, ["Description"]),
}


@pytest.mark.parametrize("case", sorted(BAD_CREATES))
def test_create_bad_input(lam_raw, case):
    fields, words = BAD_CREATES[case]
    name = f"bad-{case.replace('_', '-')}"
    req = {"FunctionName": name, "Runtime": "nodejs20.x", "Role": ROLE,
           "Handler": "index.handler", "Code": {"ZipFile": node_zip(case)}}
    req.update(fields)
    if req["Handler"] is None:
        del req["Handler"]
    expect_error(lam_raw.create_function, "InvalidParameterValueException", 400, *words, **req)
    if req["FunctionName"] == name:
        assert not exists(lam_raw, name)
    listed = [f["FunctionName"] for p in lam_raw.get_paginator("list_functions").paginate()
              for f in p["Functions"]]
    assert req["FunctionName"] not in listed


def test_create_duplicate(lam):
    c = create(lam, "twice", node_zip("twice-1"))
    msg = expect_error(create, "ResourceConflictException", 409, lam=lam, name="twice",
                       zip_bytes=node_zip("twice-2"))
    assert "twice" in msg
    # The first one is untouched.
    assert lam.get_function_configuration(FunctionName="twice")["RevisionId"] == c["RevisionId"]


def test_request_id_on_every_response(lam):
    r = lam.get_account_settings()
    assert r["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-requestid")
    a = lam.list_functions(MaxItems=1)["ResponseMetadata"]["RequestId"]
    b = lam.list_functions(MaxItems=1)["ResponseMetadata"]["RequestId"]
    assert a and b and a != b
