/*
 * placed.c - invocations placed on other nodes of a cluster (exec.h,
 * "Placement"): the engine keeps a placed invocation (its sink, request id,
 * payload) on a list of its own while the placer (api/remote.c) runs it
 * elsewhere and reports its events here; it never enters a pool's queue
 * unless handed back (realm_exec_placed_here).
 */
#include "exec/internal.h"

#include "base/alloc.h"
#include "base/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void realm_exec_set_placer(realm_exec_t *x, const realm_exec_placer_t *placer, void *ud)
{
    if (placer)
        x->placer = *placer;
    else
        memset(&x->placer, 0, sizeof(x->placer));
    x->placer_ud = placer ? ud : NULL;
}

void realm_inv_describe(const realm_inv_t *inv, realm_inv_req_t *out)
{
    memset(out, 0, sizeof(*out));
    out->payload = inv->payload;
    out->payload_len = inv->payload_len;
    out->invoked_arn = inv->invoked_arn;
    out->client_context = inv->client_context;
    out->trace_id = inv->trace_id;
    out->request_id = inv->request_id;
    out->waits_past_reserved = inv->waits_past_reserved;
    out->must_place = inv->must_place;
}

void realm_inv_set_placed(realm_inv_t *inv, void *placed)
{
    inv->placed = placed;
}

void *realm_inv_placed(const realm_inv_t *inv)
{
    return inv->placed;
}

static void unlink_placed(realm_inv_t *inv)
{
    realm_exec_t *x = inv->x;
    if (inv->placed_prev)
        inv->placed_prev->placed_next = inv->placed_next;
    else
        x->placed = inv->placed_next;
    if (inv->placed_next) inv->placed_next->placed_prev = inv->placed_prev;
    inv->placed_prev = inv->placed_next = NULL;
    inv->is_placed = 0;
}

int realm_exec_try_place(pool_t *p, realm_inv_t *inv, const realm_exec_fn_t *fn,
                         const realm_inv_sink_t *sink)
{
    realm_exec_t *x = p->x;
    if (!x->placer.place || x->is_freeing) return 0;
    if (!x->placer.place(x->placer_ud, inv, fn, sink->on_chunk != NULL)) return 0;
    inv->is_placed = 1;
    inv->placed_next = x->placed;
    if (x->placed) x->placed->placed_prev = inv;
    x->placed = inv;
    return 1;
}

void realm_exec_placed_stream(realm_inv_t *inv, const char *content_type)
{
    if (inv->is_streaming) return;
    inv->is_streaming = 1;
    free(inv->content_type);
    inv->content_type = realm_strdup(content_type ? content_type : "application/octet-stream");
    if (inv->sink.on_stream) inv->sink.on_stream(inv, inv->content_type, inv->data);
}

void realm_exec_placed_chunk(realm_inv_t *inv, const void *bytes, size_t len)
{
    if (inv->sink.on_chunk) inv->sink.on_chunk(inv, bytes, len, inv->data);
}

void realm_exec_placed_done(realm_inv_t *inv, const realm_inv_result_t *r)
{
    unlink_placed(inv);
    inv->sink.on_done(inv, r, inv->data);
    realm_exec_inv_free(inv);
}

void realm_exec_placed_here(realm_inv_t *inv)
{
    unlink_placed(inv);
    inv->placed = NULL;
    if (inv->x->is_freeing) {
        realm_exec_inv_end_later(inv, REALM_INV_FAILED, "ServiceException",
                                 "the server is shutting down");
        return;
    }
    realm_exec_admit(inv->pool, inv);
}

void realm_exec_placed_cancel(realm_inv_t *inv)
{
    realm_exec_t *x = inv->x;
    unlink_placed(inv);
    if (x->placer.cancel) x->placer.cancel(x->placer_ud, inv);
    realm_exec_inv_free(inv);
}

void realm_exec_placed_shutdown(realm_exec_t *x)
{
    while (x->placed) {
        realm_inv_t *inv = x->placed;
        unlink_placed(inv);
        if (x->placer.cancel) x->placer.cancel(x->placer_ud, inv);
        inv->placed = NULL;
        realm_exec_inv_end_later(inv, REALM_INV_FAILED, "ServiceException",
                                 "the server is shutting down");
    }
}

/* FNV-1a, 64 bits, as 16 hex digits. */
void realm_exec_key_hash(const char *key, char out[17])
{
    uint64_t h = 14695981039346656037ull;
    for (const unsigned char *c = (const unsigned char *)key; *c; c++) {
        h ^= *c;
        h *= 1099511628211ull;
    }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

void realm_exec_fn_key(const realm_exec_fn_t *fn, char out[17])
{
    char *key = realm_exec_pool_key(fn);
    realm_exec_key_hash(key, out);
    free(key);
}

void realm_exec_idle_pools(const realm_exec_t *x, realm_exec_idle_cb cb, void *data)
{
    for (const pool_t *p = x->pools; p; p = p->next) {
        if (p->is_retired || !p->n_idle) continue;
        char key[17];
        realm_exec_key_hash(p->key, key);
        cb(key, p->n_idle, data);
    }
}
