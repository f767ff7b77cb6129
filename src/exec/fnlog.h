/*
 * fnlog.h - function logs: what a function's environments write (stdout,
 * stderr) and the platform's lines (START, END, REPORT, errors), kept in a
 * file per function and, per invocation, as a short tail for Invoke's
 * LogType=Tail.
 *
 * DESIGN: a file LOGS_DIR/<tenant or _>/<name>.log, opened (folders made) on
 * the first write and appended to; past max_bytes it is renamed NAME.log.1
 * (one generation kept) and a new one begun. A failure to open is silent
 * and tried again at the next write: logs never stop an invocation. The
 * tail is a buffer holding at least the last REALM_FNLOG_TAIL_BYTES written
 * (trimmed when it doubles). Log stream names follow Lambda's shape.
 *
 * LIFETIME: realm_fnlog_new .. realm_fnlog_free (closes the file).
 * THREADS: one thread per log (exec's loop thread); writes block on the
 * file, as they did inside exec.
 */
#ifndef REALM_EXEC_FNLOG_H
#define REALM_EXEC_FNLOG_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

/* The Tail of Invoke: the last 4 KB of an invocation's log. */
#define REALM_FNLOG_TAIL_BYTES 4096u

typedef struct realm_fnlog_s realm_fnlog_t;

/*
 * A function's log file. logs_dir NULL: nothing is written (writes are
 * no-ops). tenant "" is the default namespace ("_" on disk). Strings are
 * copied. Never NULL.
 */
realm_fnlog_t *realm_fnlog_new(const char *logs_dir, const char *tenant, const char *name,
                               uint64_t max_bytes);
/* Appends bytes (flushed), rotating first if they would pass max_bytes. */
void realm_fnlog_write(realm_fnlog_t *l, const char *bytes, size_t len);
/* Closes the file; NULL is fine. */
void realm_fnlog_free(realm_fnlog_t *l);

/* Appends to an invocation's tail, keeping at least the last REALM_FNLOG_TAIL_BYTES. */
void realm_fnlog_tail_append(realm_buf_t *tail, const char *bytes, size_t len);
/* The last REALM_FNLOG_TAIL_BYTES of a tail: *out, *out_len (borrowed from tail). */
void realm_fnlog_tail_view(const realm_buf_t *tail, const char **out, size_t *out_len);

/* A log stream name as Lambda makes them: 2024/01/31/[VERSION]<32 hex>, today (UTC). */
void realm_fnlog_stream_name(char *out, size_t n, const char *version);

#endif
