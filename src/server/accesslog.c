/** Access-log lines (combined format or JSON), with API keys cut out of request targets,
 * and the error log. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "dmj/query.h"
#include "dmj/time.h"

#include "accesslog.h"

#define KEY_PARAM "personal_api_key"
#define KEY_KEPT 8 /* characters of a key the log keeps, enough to tell keys apart */

/* Log text comes from the client: anything that could break the line or the quoting is
 * written as \xHH so that one request is always one parseable line. */
static int add_escaped(struct dmj_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
            char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 15]};
            rc = dmj_buf_add(out, esc, sizeof(esc));
        } else {
            rc = dmj_buf_addc(out, (char)c);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

static bool is_key_char(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* add_escaped, with anything shaped like a personal API key ("phx_" and letters or digits)
 * cut to its first KEY_KEPT characters wherever it stands: a client that puts its key in a
 * path segment or under another parameter name must not find it in the log either. */
static int add_masked(struct dmj_buf *out, const char *s, size_t len)
{
    size_t done = 0;
    for (size_t i = 0; i + 4 <= len; i++) {
        if (memcmp(s + i, "phx_", 4) != 0)
            continue;
        size_t run = 4;
        while (i + run < len && is_key_char(s[i + run]))
            run++;
        if (run <= KEY_KEPT)
            continue;
        int rc = add_escaped(out, s + done, i + KEY_KEPT - done);
        if (rc == 0)
            rc = dmj_buf_adds(out, "...");
        if (rc != 0)
            return rc;
        done = i + run;
        i = done - 1;
    }
    return add_escaped(out, s + done, len - done);
}

int dmjd_accesslog_redact_target(struct dmj_buf *out, const char *target, size_t len)
{
    if (memchr(target, '?', len) == NULL)
        return add_masked(out, target, len);
    /* The query read as the API reads it (dmj_query_parse: tabs dropped, names decoded), so
     * that every parameter it would take as the key is cut, however it is spelled. Each cut
     * value grows by at most 2 bytes ("..." for at least one). */
    struct dmj_buf cut;
    dmj_buf_init(&cut, 2 * len + 16);
    int rc = dmj_query_redact(&cut, target, len, KEY_PARAM, KEY_KEPT);
    if (rc == 0)
        rc = add_masked(out, cut.data != NULL ? cut.data : "", cut.len);
    dmj_buf_dispose(&cut);
    return rc;
}

static int add_peer(struct dmj_buf *out, h2o_req_t *req)
{
    struct sockaddr_storage ss;
    char text[INET6_ADDRSTRLEN] = "-";
    socklen_t n = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (n > 0 && ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, text, sizeof(text));
    else if (n > 0 && ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, text, sizeof(text));
    return dmj_buf_adds(out, text);
}

static int add_header(struct dmj_buf *out, h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    if (i < 0)
        return dmj_buf_addc(out, '-');
    /* A Referer may be another API URL with a key in it. */
    return dmjd_accesslog_redact_target(out, req->headers.entries[i].value.base,
                                        req->headers.entries[i].value.len);
}

int dmjd_accesslog_format(struct dmj_buf *out, h2o_req_t *req, int status, size_t body_len)
{
    /* h2o keeps the time of the request already formatted for logs, once per second per
     * context; localtime_r per request would take glibc's time-zone lock. */
    char when[64];
    if (req->processed_at.str != NULL) {
        snprintf(when, sizeof(when), "%s", req->processed_at.str->log);
    } else {
        struct tm tm;
        time_t secs = req->processed_at.at.tv_sec;
        if (localtime_r(&secs, &tm) == NULL ||
            strftime(when, sizeof(when), "%d/%b/%Y:%H:%M:%S %z", &tm) == 0)
            strcpy(when, "-");
    }
    const char *proto = req->version >= 0x200   ? "HTTP/2"
                        : req->version == 0x100 ? "HTTP/1.0"
                                                : "HTTP/1.1";
    int rc = add_peer(out, req);
    if (rc == 0)
        rc = dmj_buf_printf(out, " - - [%s] \"", when);
    if (rc == 0)
        rc = add_escaped(out, req->input.method.base, req->input.method.len);
    if (rc == 0)
        rc = dmj_buf_addc(out, ' ');
    if (rc == 0)
        rc = dmjd_accesslog_redact_target(out, req->input.path.base, req->input.path.len);
    if (rc == 0) {
        if (body_len > 0)
            rc = dmj_buf_printf(out, " %s\" %d %zu \"", proto, status, body_len);
        else
            rc = dmj_buf_printf(out, " %s\" %d - \"", proto, status);
    }
    if (rc == 0)
        rc = add_header(out, req, H2O_TOKEN_REFERER);
    if (rc == 0)
        rc = dmj_buf_adds(out, "\" \"");
    if (rc == 0)
        rc = add_header(out, req, H2O_TOKEN_USER_AGENT);
    if (rc == 0)
        rc = dmj_buf_adds(out, "\"\n");
    return rc;
}

/* Makes what was appended to `out` since `from` (text from add_escaped: printable ASCII with
 * no '"', where only the escapes hold a '\') the inside of a JSON string, by doubling each
 * backslash in place. */
static int json_tail(struct dmj_buf *out, size_t from)
{
    size_t extra = 0;
    for (size_t i = from; i < out->len; i++)
        extra += out->data[i] == '\\';
    if (extra == 0)
        return 0;
    int rc = dmj_buf_reserve(out, extra + 1);
    if (rc != 0)
        return rc;
    size_t src = out->len, dst = out->len + extra;
    out->data[dst] = '\0';
    while (src > from) {
        char c = out->data[--src];
        out->data[--dst] = c;
        if (c == '\\')
            out->data[--dst] = c;
    }
    out->len += extra;
    return 0;
}

/* A JSON string of client text, escaped as the combined format escapes it. */
static int add_json_text(struct dmj_buf *out, const char *s, size_t len, bool redact)
{
    int rc = dmj_buf_addc(out, '"');
    size_t from = out->len;
    if (rc == 0)
        rc = redact ? dmjd_accesslog_redact_target(out, s, len) : add_escaped(out, s, len);
    if (rc == 0)
        rc = json_tail(out, from);
    if (rc == 0)
        rc = dmj_buf_addc(out, '"');
    return rc;
}

int dmjd_accesslog_format_json(struct dmj_buf *out, h2o_req_t *req, int status, size_t body_len,
                               uint64_t duration_us)
{
    char when[DMJ_TIME_TEXT_MAX];
    int64_t us = (int64_t)req->processed_at.at.tv_sec * 1000000 + req->processed_at.at.tv_usec;
    dmj_time_format_drf(us, when);
    const char *proto = req->version >= 0x200   ? "HTTP/2"
                        : req->version == 0x100 ? "HTTP/1.0"
                                                : "HTTP/1.1";
    int rc = dmj_buf_printf(out, "{\"time\":\"%s\",\"remote\":\"", when);
    if (rc == 0)
        rc = add_peer(out, req);
    if (rc == 0)
        rc = dmj_buf_adds(out, "\",\"method\":");
    if (rc == 0)
        rc = add_json_text(out, req->input.method.base, req->input.method.len, false);
    if (rc == 0)
        rc = dmj_buf_adds(out, ",\"path\":");
    if (rc == 0)
        rc = add_json_text(out, req->input.path.base, req->input.path.len, true);
    if (rc == 0)
        rc = dmj_buf_printf(out,
                            ",\"status\":%d,\"bytes\":%zu,\"duration_us\":%" PRIu64
                            ",\"protocol\":\"%s\",\"user_agent\":",
                            status, body_len, duration_us, proto);
    if (rc == 0) {
        ssize_t i = h2o_find_header(&req->headers, H2O_TOKEN_USER_AGENT, -1);
        if (i < 0)
            rc = dmj_buf_adds(out, "null");
        else
            rc = add_json_text(out, req->headers.entries[i].value.base,
                               req->headers.entries[i].value.len, true);
    }
    if (rc == 0)
        rc = dmj_buf_adds(out, "}\n");
    return rc;
}

void dmjd_log(const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    size_t n = dmj_time_format_drf((int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000, line);
    int k = snprintf(line + n, sizeof(line) - n, " dmjd: ");
    if (k > 0)
        n += (size_t)k;
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
    va_end(ap);
    /* A longer message is cut, but the line still ends. */
    if (k > 0)
        n += (size_t)k < sizeof(line) - n - 1 ? (size_t)k : sizeof(line) - n - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w; /* nowhere left to report that stderr is gone */
}

int dmjd_accesslog_open(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int dmjd_accesslog_reopen(const char *path, int fd)
{
    int nfd = dmjd_accesslog_open(path);
    if (nfd < 0)
        return -1;
    int rc = dup3(nfd, fd, O_CLOEXEC) < 0 ? -1 : 0;
    int saved = errno;
    close(nfd);
    errno = saved;
    return rc;
}
