/*
 * pg_fixture.h - what the unit tests built with REALM_TEST_PG share: the
 * database to run against and a way to empty it between tests.
 *
 * DESIGN: the database is named by REALM_TEST_PG_URL, which
 * tests/unit/with_pg.sh sets (it starts a throwaway cluster for ctest). A
 * missing URL fails the test with a message saying how to run it: these
 * tests never skip.
 *
 * LIFETIME: fx_pg_url's string is the environment's.
 * THREADS: the test's thread.
 */
#ifndef REALM_TEST_PG_FIXTURE_H
#define REALM_TEST_PG_FIXTURE_H

/* REALM_TEST_PG_URL; fails the running test when it is not set. */
const char *fx_pg_url(void);

/* Drops everything Realm made in the database (its public schema made
 * again, empty), so each test starts from a database Realm never used.
 * Fails the running test on an error. */
void fx_pg_reset(void);

/* Runs sql on a connection of its own; returns the first column of the
 * first row in out (len bytes; "" when none). Fails the test on an error. */
void fx_pg_query(const char *sql, char *out, size_t len);

#endif
