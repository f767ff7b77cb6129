/*
 * internal.h - what a storage backend implements (not a public header):
 * the operations table and the handle every backend's store starts with.
 */
#ifndef REALM_STORE_INTERNAL_H
#define REALM_STORE_INTERNAL_H

#include "store/store.h"

typedef struct {
    const char *name;
    void (*close)(realm_store_t *s);
    int (*begin)(realm_store_t *s);
    int (*commit)(realm_store_t *s);
    void (*rollback)(realm_store_t *s);

    int (*fn_get)(realm_store_t *s, const char *t, const char *n, realm_store_fn_t *out);
    int (*fn_insert)(realm_store_t *s, const char *t, const char *n, json_t *tags);
    int (*fn_delete)(realm_store_t *s, const char *t, const char *n);
    int (*fn_set_reserved)(realm_store_t *s, const char *t, const char *n, int64_t reserved);
    int (*fn_set_tags)(realm_store_t *s, const char *t, const char *n, json_t *tags);
    int64_t (*fn_take_version)(realm_store_t *s, const char *t, const char *n);
    int64_t (*fn_sum_reserved)(realm_store_t *s, const char *t, const char *except);
    int (*fn_usage)(realm_store_t *s, const char *t, int64_t *count, int64_t *code_size);
    int (*ver_get)(realm_store_t *s, const char *t, const char *n, int64_t num, json_t **config,
                   char *code);
    int (*ver_last)(realm_store_t *s, const char *t, const char *n, int64_t *num, json_t **config,
                    char *code);
    int (*ver_insert)(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config);
    int (*ver_update)(realm_store_t *s, const char *t, const char *n, int64_t num, const char *code,
                      json_t *config);
    int (*ver_delete)(realm_store_t *s, const char *t, const char *n, int64_t num);
    json_t *(*ver_list)(realm_store_t *s, const char *t, const char *n, const char *after_name,
                        int64_t after_num, int latest_only, size_t limit);
    int (*code_used)(realm_store_t *s, const char *t, const char *hex);
    int (*alias_get)(realm_store_t *s, const char *t, const char *n, const char *a,
                     json_t **config);
    int (*alias_put)(realm_store_t *s, const char *t, const char *n, const char *a, json_t *config,
                     int is_insert);
    int (*alias_delete)(realm_store_t *s, const char *t, const char *n, const char *a);
    json_t *(*alias_list)(realm_store_t *s, const char *t, const char *n, const char *after,
                          const char *version, size_t limit);
    int (*alias_using)(realm_store_t *s, const char *t, const char *n, const char *version,
                       char *alias_out);

    int64_t (*q_push)(realm_store_t *s, const char *t, const char *f, const char *q,
                      const void *payload, size_t len, int64_t now_ms, uint64_t max_fn,
                      uint64_t max_tenant, char *which);
    size_t (*q_claim)(realm_store_t *s, int64_t now_ms, int64_t lease_until_ms,
                      realm_store_event_t *out, size_t max);
    int (*q_payload)(realm_store_t *s, int64_t id, char **data, size_t *len);
    int (*q_complete)(realm_store_t *s, int64_t id, uint64_t lease);
    int (*q_retry)(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms, const char *error);
    int (*q_defer)(realm_store_t *s, int64_t id, uint64_t lease, int64_t due_ms);
    int (*q_release)(realm_store_t *s, int64_t id, uint64_t lease);
    int (*q_fail)(realm_store_t *s, int64_t id, uint64_t lease, const char *etype, const char *emsg,
                  int64_t now_ms, int64_t keep);
    int (*q_park)(realm_store_t *s, int64_t id, uint64_t lease, int64_t until_ms);
    int64_t (*q_unpark)(realm_store_t *s, const char *t, const char *f, int64_t now_ms);
    json_t *(*q_parked)(realm_store_t *s);
    int64_t (*q_next_due)(realm_store_t *s);
    size_t (*q_pending)(realm_store_t *s, const char *t, const char *f);
    void (*q_stats)(realm_store_t *s, realm_store_q_stats_t *out);
    json_t *(*q_failed)(realm_store_t *s, const char *t, const char *f, size_t limit);
    int (*q_forget)(realm_store_t *s, const char *t, const char *f);

    int (*tenant_get)(realm_store_t *s, const char *t, char *account_id);
    int (*tenant_add)(realm_store_t *s, const char *t, const char *account_id, int64_t now_ms);
    int (*key_add)(realm_store_t *s, const realm_store_key_t *key);
    int (*key_get)(realm_store_t *s, const char *id, int by_access_key, realm_store_key_t *out);
    int (*key_list)(realm_store_t *s, realm_store_key_t **out, size_t *n);
    int (*key_revoke)(realm_store_t *s, const char *key_id, int64_t now_ms);
    int (*key_any)(realm_store_t *s);
    int64_t (*auth_version)(realm_store_t *s);
} realm_store_ops_t;

/* A create or code update in flight (kept by store.c for every backend of
 * one process; a shared backend would keep them in its database). */
typedef struct {
    char *tenant, *name;
    int is_create;
} store_pending_t;

/* The head of every backend's store. */
struct realm_store_s {
    const realm_store_ops_t *ops;
    realm_store_kind_t kind;
    uint64_t generation; /* bumped by backends on every call that may write */
    store_pending_t *pending;
    size_t pending_cnt, pending_cap;
};

realm_store_t *realm_store_sqlite_open(realm_store_kind_t kind, const char *path, char *err,
                                       size_t err_len);
realm_store_t *realm_store_memory_open(realm_store_kind_t kind, const char *name, char *err,
                                       size_t err_len);

#endif
