/*
 * err.h - Realm's one error vocabulary.
 *
 * 0 is success and failures are negative, as in libuv; libuv/errno codes pass
 * through unchanged (they are small negatives), ours start at -1000. One
 * X-macro table generates the enum and, per error, the three faces it shows:
 * the WebSocket protocol code, the HTTP status and the AWS error type (the
 * `X-Amz-Errortype` / `__type` of the Lambda APIs), plus a default message.
 * Every layer returns these codes; only the wire adapters pick a column.
 * Append only; never renumber. Ranges: -1001.. protocol and engine,
 * -1100.. control plane (registry, store), -1150.. runtime API and execution,
 * -1200.. admission and HTTP surfaces.
 */
#ifndef REALM_BASE_ERR_H
#define REALM_BASE_ERR_H

/*  name, value, protocol code, http, AWS error type, default message */
#define REALM_ERR_MAP(X)                                                                           \
    X(INVALID_REQUEST, -1001, "INVALID_REQUEST", 400, "InvalidRequestContentException",            \
      "invalid request")                                                                           \
    X(FUNCTION_NOT_FOUND, -1002, "FUNCTION_NOT_FOUND", 404, "ResourceNotFoundException",           \
      "function not found")                                                                        \
    X(INVALID_PARAMS, -1003, "INVALID_PARAMS", 400, "InvalidParameterValueException",              \
      "invalid params")                                                                            \
    X(INTERNAL_ERROR, -1004, "INTERNAL_ERROR", 500, "ServiceException", "internal error")          \
    X(CALL_NOT_FOUND, -1005, "CALL_NOT_FOUND", 404, "ResourceNotFoundException",                   \
      "no call in flight with that id")                                                            \
    X(TOO_MANY_CALLS, -1006, "TOO_MANY_CALLS", 429, "TooManyRequestsException",                    \
      "too many calls in flight")                                                                  \
    X(SHUTTING_DOWN, -1007, "SHUTTING_DOWN", 503, "ServiceException", "server is shutting down")   \
    X(BACKPRESSURE, -1008, "BACKPRESSURE", 503, "ServiceException", "send queue full")             \
    X(CLOSED, -1009, "CLOSED", 500, "ServiceException", "connection closed")                       \
    X(FUNCTION_ERROR, -1010, "FUNCTION_ERROR", 502, "ServiceException", "the function failed")     \
    X(THROTTLED, -1011, "THROTTLED", 429, "TooManyRequestsException",                              \
      "too many invocations of this function at once")                                             \
    X(UNAUTHORIZED, -1012, "UNAUTHORIZED", 401, "UnrecognizedClientException",                     \
      "not allowed for this key")                                                                  \
    X(RATE_LIMIT_EXCEEDED, -1013, "RATE_LIMIT_EXCEEDED", 429, "TooManyRequestsException",          \
      "rate limit exceeded")                                                                       \
    X(TOO_MANY_CONNECTIONS, -1200, "TOO_MANY_CONNECTIONS", 503, "ServiceException",                \
      "too many connections")                                                                      \
    X(TENANT_NOT_FOUND, -1201, "TENANT_NOT_FOUND", 404, "ResourceNotFoundException",               \
      "no such tenant")                                                                            \
    /* The runtime API (an environment's calls; HTTP and the channel, api/runtime.c). */           \
    X(INVALID_REQUEST_ID, -1150, "INVALID_REQUEST_ID", 400, "InvalidRequestID",                    \
      "Invalid request ID")                                                                        \
    X(INVALID_STATE_TRANSITION, -1151, "INVALID_STATE", 403, "InvalidStateTransition",             \
      "State transition failed for runtime: the call is out of order")                             \
    X(ENV_GONE, -1152, "UNKNOWN_ENVIRONMENT", 403, "InvalidStateTransition",                       \
      "The execution environment has been stopped")                                                \
    X(RESPONSE_TOO_LARGE, -1153, "PAYLOAD_TOO_LARGE", 413, "RequestEntityTooLarge",                \
      "Exceeded maximum allowed payload size")                                                     \
    X(ENV_STOPPED, -1154, "ENV_STOPPED", 410, "Realm.EnvironmentStopped",                          \
      "The execution environment was stopped")                                                     \
    X(UNKNOWN_ENVIRONMENT, -1155, "UNKNOWN_ENVIRONMENT", 403, "Realm.UnknownEnvironment",          \
      "This connection does not come from an execution environment of this server")                \
    /* The control plane (registry/, the Lambda APIs of api/control.c and api/invoke.c). */        \
    X(RESOURCE_CONFLICT, -1100, "CONFLICT", 409, "ResourceConflictException",                      \
      "the resource already exists or is being changed")                                           \
    X(PRECONDITION_FAILED, -1101, "PRECONDITION_FAILED", 412, "PreconditionFailedException",       \
      "the revision does not match")                                                               \
    X(REQUEST_TOO_LARGE, -1102, "PAYLOAD_TOO_LARGE", 413, "RequestTooLargeException",              \
      "request too large")                                                                         \
    X(EVENT_QUEUE_FULL, -1103, "EVENT_QUEUE_FULL", 429, "TooManyRequestsException",                \
      "the event queue is full")                                                                   \
    X(STORE_UNAVAILABLE, -1104, "STORE_UNAVAILABLE", 503, "ServiceException",                      \
      "the database is unavailable; retry shortly")                                                \
    /* The cluster's message bus (bus/, docs/cluster.md). */                                       \
    X(BUS_UNAVAILABLE, -1300, "CLUSTER_UNAVAILABLE", 503, "ServiceException",                      \
      "the cluster's message bus is unavailable; retry shortly")                                   \
    X(BUS_TIMEOUT, -1301, "NODE_TIMEOUT", 504, "ServiceException",                                 \
      "another node did not answer in time")                                                       \
    X(BUS_NO_RESPONDERS, -1302, "NODE_UNAVAILABLE", 503, "ServiceException",                       \
      "no node listens for that")                                                                  \
    X(NODE_LOST, -1303, "NODE_LOST", 502, "ServiceException",                                      \
      "the node running the call was lost")                                                        \
    /* generate (invoke/generate.c). */                                                            \
    X(NO_MODEL, -1220, "NO_MODEL", 503, "ServiceException", "generate has no model")               \
    X(GENERATE_UNAVAILABLE, -1221, "GENERATE_UNAVAILABLE", 503, "ServiceException",                \
      "generate is not available on this server")

typedef enum {
#define REALM_ERR_ENUM(name, value, code, status, aws, msg) REALM_ERR_##name = value,
    REALM_ERR_MAP(REALM_ERR_ENUM)
#undef REALM_ERR_ENUM
} realm_err_t;

/* Protocol code string ("INVALID_REQUEST"); "INTERNAL_ERROR" for unknown codes. */
const char *realm_err_code(int err);
/* Default human message; uv_strerror() for libuv/errno codes. */
const char *realm_err_message(int err);
/* HTTP status the error maps to (500 for unknown codes). */
int realm_err_http_status(int err);
/* AWS error type ("ResourceNotFoundException"); "ServiceException" for unknown codes. */
const char *realm_err_aws_type(int err);

/*
 * An error with its own message, for the layers that say more than the
 * default (the registry's "Function not found: arn:..."): code is a
 * REALM_ERR_* value (0 when nothing failed) and the wire adapters render it
 * through the columns above (realm_err_http_status, realm_err_aws_type,
 * realm_err_code) with message as the text.
 */
typedef struct {
    int code;
    char message[512];
} realm_error_t;

/* Sets e (code and the printf-formatted message, truncated) and returns -1,
 * so `return realm_error_set(e, ...)` reads well. */
int realm_error_set(realm_error_t *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
