/* The API's error answers: the one place where an error kind becomes a status and a body. */
#include <stdio.h>
#include <string.h>

#include "dmj/json.h"

#include "api_internal.h"

struct error_shape {
    int status;
    const char *type;
    const char *code;
    const char *attr;
};

static const struct error_shape shapes[] = {
    [DMJ__API_ERR_NOT_AUTHENTICATED] = {401, "authentication_error", "not_authenticated", NULL},
    [DMJ__API_ERR_AUTH_FAILED] = {401, "authentication_error", "authentication_failed", NULL},
    [DMJ__API_ERR_PERMISSION] = {403, "authentication_error", "permission_denied", NULL},
    [DMJ__API_ERR_NOT_FOUND] = {404, "invalid_request", "not_found", NULL},
    [DMJ__API_ERR_METHOD] = {405, "invalid_request", "method_not_allowed", NULL},
    [DMJ__API_ERR_NULL_CHARS] = {400, "validation_error", "null_characters_not_allowed",
                                 "saved_query_id"},
    [DMJ__API_ERR_INVALID_CHOICE] = {400, "validation_error", "invalid_choice", "saved_query_id"},
    [DMJ__API_ERR_THROTTLED] = {429, "throttled_error", "throttled", NULL},
    [DMJ__API_ERR_BAD_REQUEST] = {400, "invalid_request", "bad_request", NULL},
    [DMJ__API_ERR_SERVER] = {500, "server_error", "error", NULL},
};

/* What we send when even the error body cannot be written (it never should: it is small). */
static const char last_resort[] =
    "{\"type\":\"server_error\",\"code\":\"error\",\"detail\":\"A server error occurred.\","
    "\"attr\":null}";

/* Makes `res` the error answer of this shape (the detail is copied into the worker's body). */
static void fail_shape(struct dmj__api_ctx *c, const struct error_shape *s, const char *detail)
{
    struct dmj_api_response *res = c->res;
    struct dmj_buf *body = &c->w->body;

    dmj_buf_reset(body);
    res->status = s->status;
    res->json = true;
    res->etag[0] = '\0';
    res->retry_after = 0;
    res->www_authenticate = s->status == 401;
    if (dmj_json_add_error(body, s->type, s->code, detail, s->attr) != 0) {
        res->status = 500;
        res->www_authenticate = false;
        res->body = last_resort;
        res->body_len = sizeof last_resort - 1;
        return;
    }
    res->body = body->data;
    res->body_len = body->len;
}

void dmj__api_fail(struct dmj__api_ctx *c, enum dmj__api_error kind, const char *detail)
{
    fail_shape(c, &shapes[kind], detail);
}

void dmj__api_invalid_param(struct dmj__api_ctx *c, const char *code, const char *detail,
                            const char *attr)
{
    const struct error_shape s = {400, "validation_error", code, attr};
    fail_shape(c, &s, detail);
}

void dmj__api_throttled(struct dmj__api_ctx *c, unsigned seconds)
{
    char detail[96];
    snprintf(detail, sizeof detail, "Request was throttled. Expected available in %u %s.", seconds,
             seconds == 1 ? "second" : "seconds");
    dmj__api_fail(c, DMJ__API_ERR_THROTTLED, detail);
    if (c->res->status == 429)
        c->res->retry_after = seconds;
}

/* Appends one byte of the method as Django shows it: WSGI hands the method over as latin-1
 * text and Django upper-cases it (str.upper), so the few latin-1 letters whose capital lies
 * outside latin-1 change shape, and every byte >= 0x80 becomes two bytes of UTF-8. */
static int add_method_byte(struct dmj_buf *b, unsigned char ch)
{
    if (ch >= 'a' && ch <= 'z')
        return dmj_buf_addc(b, (char)(ch - 'a' + 'A'));
    if (ch < 0x80)
        return dmj_buf_addc(b, (char)ch);
    if (ch == 0xb5) /* MICRO SIGN -> GREEK CAPITAL MU */
        return dmj_buf_adds(b, "\xce\x9c");
    if (ch == 0xdf) /* SHARP S -> "SS" */
        return dmj_buf_adds(b, "SS");
    if (ch == 0xff) /* y WITH DIAERESIS -> U+0178 */
        return dmj_buf_adds(b, "\xc5\xb8");
    if (ch >= 0xe0 && ch != 0xf7)
        ch = (unsigned char)(ch - 0x20);
    char utf8[2] = {(char)(0xc0 | (ch >> 6)), (char)(0x80 | (ch & 0x3f))};
    return dmj_buf_add(b, utf8, 2);
}

void dmj__api_method_not_allowed(struct dmj__api_ctx *c)
{
    struct dmj_buf *msg = &c->w->scratch;
    const struct dmj_str *m = &c->req->method;
    int rc;

    dmj_buf_reset(msg);
    rc = dmj_buf_adds(msg, "Method \"");
    for (size_t i = 0; rc == 0 && m->ptr && i < m->len; i++)
        rc = add_method_byte(msg, (unsigned char)m->ptr[i]);
    if (rc == 0)
        rc = dmj_buf_adds(msg, "\" not allowed.");
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return;
    }
    dmj__api_fail(c, DMJ__API_ERR_METHOD, msg->data);
}

void dmj__api_internal(struct dmj__api_ctx *c, int err)
{
    (void)err; /* never exposed: no error shows a path, a stack or a store detail */
    dmj__api_fail(c, DMJ__API_ERR_SERVER, DMJ__MSG_SERVER_ERROR);
}
