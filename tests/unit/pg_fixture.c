/*
 * pg_fixture.c - see pg_fixture.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "pg_fixture.h"

static void no_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

const char *fx_pg_url(void)
{
    const char *url = getenv("REALM_TEST_PG_URL");
    if (!url || !*url)
        fail_msg("REALM_TEST_PG_URL is not set: run this test through ctest (which starts a "
                 "throwaway PostgreSQL with tests/unit/with_pg.sh) or set it to a database "
                 "the test may empty");
    return url;
}

void fx_pg_query(const char *sql, char *out, size_t len)
{
    PGconn *c = PQconnectdb(fx_pg_url());
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("connecting to REALM_TEST_PG_URL: %s", msg);
    }
    PQsetNoticeProcessor(c, no_notice, NULL);
    PGresult *r = PQexec(c, sql);
    ExecStatusType es = PQresultStatus(r);
    if (es != PGRES_COMMAND_OK && es != PGRES_TUPLES_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQresultErrorMessage(r));
        PQclear(r);
        PQfinish(c);
        fail_msg("%s: %s", sql, msg);
    }
    if (out && len) {
        snprintf(out, len, "%s",
                 es == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "");
    }
    PQclear(r);
    PQfinish(c);
}

void fx_pg_reset(void)
{
    PGconn *c = PQconnectdb(fx_pg_url());
    if (PQstatus(c) != CONNECTION_OK) {
        char msg[512];
        snprintf(msg, sizeof(msg), "%s", PQerrorMessage(c));
        PQfinish(c);
        fail_msg("connecting to REALM_TEST_PG_URL: %s", msg);
    }
    PQsetNoticeProcessor(c, no_notice, NULL);
    PGresult *r = PQexec(c, "DROP SCHEMA IF EXISTS public CASCADE; CREATE SCHEMA public");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    char msg[512];
    snprintf(msg, sizeof(msg), "%s", ok ? "" : PQresultErrorMessage(r));
    PQclear(r);
    PQfinish(c);
    if (!ok) fail_msg("emptying the test database: %s", msg);
}
