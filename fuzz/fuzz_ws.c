/*
 * fuzz_ws.c - libFuzzer driver for the WebSocket frame + call-message path:
 * bytes go through a server session (wslay: framing, masking, fragments,
 * UTF-8, close codes) in pieces, and every complete text message through the
 * call protocol parser, as the client surface does.
 *
 *   make fuzz-build && build/fuzz/fuzz_ws -max_total_time=600 fuzz/corpus/fuzz_ws
 */
#include "proto/message.h"
#include "ws/session.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_output(void *ud, const uint8_t *out, size_t len)
{
    (void)ud;
    (void)out;
    (void)len;
}

static void on_message(void *ud, int opcode, const uint8_t *msg, size_t len)
{
    (void)ud;
    if (opcode != REALM_WS_TEXT) return;
    realm_msg_call_t call;
    char err[512];
    if (realm_msg_parse_call((const char *)msg, len, &call, err, sizeof(err)) == 0) {
        size_t n;
        free(realm_msg_reply(call.id, "complete", call.params, &n));
    } else {
        size_t n;
        free(realm_msg_error(call.id, "INVALID_REQUEST", err, NULL, &n));
    }
    realm_msg_call_dispose(&call);
}

static const realm_ws_session_cbs_t cbs = {on_output, on_message};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    size_t step = (size_t)data[0] + 1;
    data++, size--;
    realm_ws_session_t *s = realm_ws_session_new(&cbs, NULL, 64 * 1024);
    for (size_t off = 0; off < size && !realm_ws_session_is_done(s); off += step) {
        size_t n = size - off < step ? size - off : step;
        realm_ws_session_feed(s, data + off, n);
    }
    realm_ws_session_free(s);
    return 0;
}
