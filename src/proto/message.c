/*
 * message.c - call protocol codec over jansson (see message.h).
 */
#include "proto/message.h"

#include "base/err.h"
#include "base/str.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

__attribute__((format(printf, 3, 4))) static int invalid(char *err, size_t err_len, const char *fmt,
                                                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return REALM_ERR_INVALID_REQUEST;
}

int realm_msg_parse_call(const char *data, size_t len, realm_msg_call_t *out, char *err,
                         size_t err_len)
{
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    out->root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (out->root == NULL) {
        return invalid(err, err_len, "message is not valid JSON: %s (at byte %d)", jerr.text,
                       jerr.position);
    }
    if (!json_is_object(out->root))
        return invalid(err, err_len, "message must be a JSON object, not %s",
                       json_type_name(out->root));

    json_t *id = json_object_get(out->root, "id");
    if (id == NULL) return invalid(err, err_len, "missing 'id'");
    if (!json_is_string(id))
        return invalid(err, err_len, "'id' must be a string, not %s", json_type_name(id));
    size_t id_len = json_string_length(id);
    if (id_len == 0 || id_len > REALM_MSG_MAX_ID_LEN)
        return invalid(err, err_len, "'id' must be 1 to 256 characters");
    if (strlen(json_string_value(id)) != id_len)
        return invalid(err, err_len, "'id' must not contain NUL");
    out->id = json_string_value(id);

    json_t *fn = json_object_get(out->root, "function");
    if (fn == NULL) return invalid(err, err_len, "missing 'function'");
    if (!json_is_string(fn) || json_string_length(fn) == 0)
        return invalid(err, err_len, "'function' must be a non-empty string, not %s",
                       json_is_string(fn) ? "an empty string" : json_type_name(fn));
    out->function = json_string_value(fn);
    if (realm_str_has_ctl(out->function, json_string_length(fn)))
        return invalid(err, err_len, "'function' must not contain control characters");

    json_t *params = json_object_get(out->root, "params");
    if (params == NULL || json_is_null(params)) {
        params = json_object();
        json_object_set_new(out->root, "params", params);
    } else if (!json_is_object(params)) {
        return invalid(err, err_len, "'params' must be an object, not %s", json_type_name(params));
    }
    out->params = params;

    json_t *tenant = json_object_get(out->root, "tenant_id");
    if (tenant && !json_is_null(tenant)) {
        if (!json_is_string(tenant))
            return invalid(err, err_len, "'tenant_id' must be a string or null, not %s",
                           json_type_name(tenant));
        out->tenant_id = json_string_value(tenant);
    }

    const char *key;
    json_t *v;
    json_object_foreach(out->root, key, v)
    {
        if (strcmp(key, "id") && strcmp(key, "function") && strcmp(key, "params") &&
            strcmp(key, "tenant_id"))
            return invalid(err, err_len,
                           "unknown field '%s' (a call has id, function, params, tenant_id)%s", key,
                           "");
    }
    return 0;
}

void realm_msg_call_dispose(realm_msg_call_t *c)
{
    json_decref(c->root);
    memset(c, 0, sizeof(*c));
}

static char *dump(json_t *o, size_t *len)
{
    char *text = json_dumps(o, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(o);
    if (text == NULL) abort(); /* only on out-of-memory */
    *len = strlen(text);
    return text;
}

static json_t *id_value(const char *id)
{
    return id ? json_string(id) : json_null();
}

char *realm_msg_reply(const char *id, const char *status, json_t *data, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", id_value(id));
    json_object_set_new(o, "status", json_string(status));
    json_object_set(o, "data", data ? data : json_null());
    return dump(o, len);
}

char *realm_msg_error(const char *id, const char *code, const char *message, json_t *details,
                      size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", id_value(id));
    json_object_set_new(o, "status", json_string("error"));
    json_t *e = json_object();
    json_object_set_new(e, "code", json_string(code));
    json_object_set_new(e, "message", json_string(message));
    if (details) json_object_update_missing(e, details);
    json_object_set_new(o, "error", e);
    return dump(o, len);
}

char *realm_msg_cancelled(const char *id, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", id_value(id));
    json_object_set_new(o, "status", json_string("cancelled"));
    return dump(o, len);
}

char *realm_msg_welcome(const char *version, const char *tenant_id, size_t *len)
{
    json_t *o = json_object();
    json_object_set_new(o, "status", json_string("connected"));
    json_object_set_new(o, "version", json_string(version));
    json_object_set_new(o, "tenant_id", tenant_id ? json_string(tenant_id) : json_null());
    return dump(o, len);
}
