/* Who is asking and may they read this team: personal API keys, team resolution, and the
 * permission checks of docs/api.md's checks, in the peer's order. */
#include <stdio.h>
#include <string.h>

#include "dmj/identity.h"
#include "dmj/query.h"
#include "dmj/store.h"
#include "dmj/uuid.h"
#include "number.h"

#include "api_internal.h"

/* Python's str.isspace() over latin-1, which is how Django sees header bytes (WSGI): the
 * ASCII controls \t..\r, the separators \x1c..\x1f, space, NEL and NO-BREAK SPACE. */
static bool py_space(unsigned char ch)
{
    return (ch >= 0x09 && ch <= 0x0d) || (ch >= 0x1c && ch <= 0x20) || ch == 0x85 || ch == 0xa0;
}

/* re.match(r"^Bearer\s+(\S.+)$", header) and .strip() on the group. \s+ is greedy and \S
 * refuses what \s takes, so the group starts at the first non-space after "Bearer"; `.`
 * stops at '\n', and `$` also matches before one final '\n'. */
static bool bearer_token(const char *h, size_t len, const char **tok, size_t *tok_len)
{
    static const char word[] = "Bearer";
    size_t n = sizeof word - 1;

    if (len < n || memcmp(h, word, n) != 0)
        return false;
    size_t p = n;
    while (p < len && py_space((unsigned char)h[p]))
        p++;
    if (p == n || p >= len)
        return false;
    size_t end = len;
    if (h[end - 1] == '\n')
        end--;
    /* `\S.+`: the first character and at least one more, none of them '\n'. */
    if (end < p + 2)
        return false;
    if (memchr(h + p, '\n', end - p) != NULL)
        return false;
    while (end > p && py_space((unsigned char)h[end - 1]))
        end--;
    *tok = h + p;
    *tok_len = end - p;
    return true;
}

/* Django hashes key.encode() of the latin-1 text WSGI made of the header: re-encode each
 * byte >= 0x80 as two bytes of UTF-8 so that the hash matches. */
static int latin1_to_utf8(const char *s, size_t len, struct dmj_buf *out)
{
    dmj_buf_reset(out);
    size_t i = 0;
    while (i < len) {
        /* ASCII runs (every real key) are copied at once. */
        size_t run = i;
        while (run < len && (unsigned char)s[run] < 0x80)
            run++;
        int rc = run > i ? dmj_buf_add(out, s + i, run - i) : 0;
        if (rc != 0)
            return rc;
        if (run == len)
            break;
        unsigned char ch = (unsigned char)s[run];
        char two[2] = {(char)(0xc0 | (ch >> 6)), (char)(0x80 | (ch & 0x3f))};
        rc = dmj_buf_add(out, two, 2);
        if (rc != 0)
            return rc;
        i = run + 1;
    }
    return 0;
}

/* Looks the key up by its hash; 0 when it exists and its owner is active, DMJ_ENOTFOUND when
 * it is not a valid key, another code on a store failure. */
static int lookup_key(struct dmj__api_ctx *c, const char *key, size_t len)
{
    struct dmj_api_worker *w = c->w;
    char hash[DMJ_KEY_HASH_LEN + 1];
    struct dmj_user user;

    dmj_key_hash(key, len, hash);
    int rc = dmj_read_key(w->read, hash, &w->key);
    if (rc != 0)
        return rc;
    rc = dmj_read_user(w->read, w->key.user_id, &user);
    if (rc != 0)
        return rc;
    if (!user.is_active)
        return DMJ_ENOTFOUND;
    c->user = user;
    return 0;
}

int dmj__api_authenticate(struct dmj__api_ctx *c)
{
    struct dmj_api_worker *w = c->w;
    const struct dmj_str *auth = &c->req->authorization;
    const char *tok;
    size_t tok_len;
    int rc;

    if (auth->ptr && bearer_token(auth->ptr, auth->len, &tok, &tok_len)) {
        if (tok_len >= 4 && memcmp(tok, "pha_", 4) == 0) {
            dmj__api_fail(c, DMJ__API_ERR_AUTH_FAILED, DMJ__MSG_INVALID_OAUTH);
            return 1;
        }
        rc = latin1_to_utf8(tok, tok_len, &w->scratch);
        if (rc == DMJ_ETOOBIG) {
            /* Longer than any key we could have stored. */
            dmj__api_fail(c, DMJ__API_ERR_AUTH_FAILED, DMJ__MSG_INVALID_KEY_HEADER);
            return 1;
        }
        if (rc == 0)
            rc = lookup_key(c, w->scratch.data ? w->scratch.data : "", w->scratch.len);
        if (rc == DMJ_ENOTFOUND) {
            dmj__api_fail(c, DMJ__API_ERR_AUTH_FAILED, DMJ__MSG_INVALID_KEY_HEADER);
            return 1;
        }
        if (rc != 0) {
            dmj__api_internal(c, rc);
            return 1;
        }
        return 0;
    }

    const struct dmj_query *query = dmj__api_query(c);
    if (query == NULL) {
        dmj__api_internal(c, DMJ_ETOOBIG);
        return 1;
    }
    const struct dmj_query_param *qp = dmj_query_last(query, "personal_api_key");
    if (qp == NULL) {
        dmj__api_fail(c, DMJ__API_ERR_NOT_AUTHENTICATED, DMJ__MSG_NOT_AUTHENTICATED);
        return 1;
    }
    rc = lookup_key(c, qp->value, qp->value_len);
    if (rc == DMJ_ENOTFOUND) {
        dmj__api_fail(c, DMJ__API_ERR_AUTH_FAILED, DMJ__MSG_INVALID_KEY_QUERY);
        return 1;
    }
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return 1;
    }
    return 0;
}

/* PostHog's User.team: the current team if it exists; else the lowest-id team of the user's
 * organization (the current one, else the lowest-UUID one among the memberships), counting
 * only an organization the user is a member of. DMJ_ENOTFOUND when nothing resolves. */
static int resolve_current(struct dmj__api_ctx *c, struct dmj_team *out)
{
    struct dmj_read *r = c->w->read;
    const struct dmj_user *u = &c->user;
    uint8_t org[16];
    int32_t team_id;
    int rc;

    if (u->has_current_team) {
        rc = dmj_read_team(r, u->current_team_id, out);
        if (rc != DMJ_ENOTFOUND)
            return rc;
    }
    if (u->has_current_org) {
        memcpy(org, u->current_org, 16);
        rc = dmj_read_membership(r, u->id, org);
    } else {
        rc = dmj_read_first_org_of_user(r, u->id, org);
    }
    if (rc != 0)
        return rc;
    rc = dmj_read_first_team_of_org(r, org, &team_id);
    if (rc != 0)
        return rc;
    return dmj_read_team(r, team_id, out);
}

/* Step 3: the path's team segment, "@current" or an int() in the 32-bit id range. */
static int resolve_team(struct dmj__api_ctx *c)
{
    static const char current[] = "@current";
    int rc;

    if (c->team_len == sizeof current - 1 && memcmp(c->team_seg, current, c->team_len) == 0) {
        rc = resolve_current(c, &c->team);
    } else {
        long long id;
        bool overflow = false;
        rc = dmj_parse_int(c->team_seg, c->team_len, &id, &overflow);
        if (rc == 0 && (overflow || id < INT32_MIN || id > INT32_MAX))
            rc = DMJ_ENOTFOUND;
        if (rc == DMJ_EINVAL)
            rc = DMJ_ENOTFOUND;
        if (rc == 0)
            rc = dmj_read_team(c->w->read, (int32_t)id, &c->team);
    }
    if (rc == DMJ_ENOTFOUND) {
        dmj__api_fail(c, DMJ__API_ERR_NOT_FOUND, DMJ__MSG_PROJECT_NOT_FOUND);
        return 1;
    }
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return 1;
    }
    return 0;
}

static bool str_is(const struct dmj_str *s, const char *lit)
{
    size_t n = strlen(lit);
    return s->ptr != NULL && s->len == n && memcmp(s->ptr, lit, n) == 0;
}

static bool has_read_scope(const struct dmj_key *k)
{
    for (unsigned i = 0; i < k->n_scopes && i < DMJ_KEY_MAX_SCOPES; i++) {
        const struct dmj_str *s = &k->scopes[i];
        if (str_is(s, "*") || str_is(s, "warehouse_view:read") || str_is(s, "warehouse_view:write"))
            return true;
    }
    return false;
}

int dmj__api_authorize(struct dmj__api_ctx *c)
{
    const struct dmj_key *k = &c->w->key;
    char detail[160];
    int rc;

    if (resolve_team(c) != 0)
        return 1;

    if (k->n_teams > 0) {
        bool found = false;
        for (unsigned i = 0; i < k->n_teams && i < DMJ_KEY_MAX_TEAMS && !found; i++)
            found = k->scoped_teams[i] == c->team.id;
        if (!found) {
            snprintf(detail, sizeof detail,
                     "API key does not have access to the requested project: ID %ld.",
                     (long)c->team.id);
            dmj__api_fail(c, DMJ__API_ERR_PERMISSION, detail);
            return 1;
        }
    }
    if (k->n_orgs > 0) {
        bool found = false;
        for (unsigned i = 0; i < k->n_orgs && i < DMJ_KEY_MAX_ORGS && !found; i++)
            found = memcmp(k->scoped_orgs[i], c->team.organization_id, 16) == 0;
        if (!found) {
            char text[DMJ_UUID_TEXT_LEN + 1];
            dmj_uuid_format(c->team.organization_id, text);
            snprintf(detail, sizeof detail,
                     "API key does not have access to the requested organization: ID %s.", text);
            dmj__api_fail(c, DMJ__API_ERR_PERMISSION, detail);
            return 1;
        }
    }
    if (!has_read_scope(k)) {
        dmj__api_fail(c, DMJ__API_ERR_PERMISSION, DMJ__MSG_MISSING_SCOPE);
        return 1;
    }
    rc = dmj_read_membership(c->w->read, c->user.id, c->team.organization_id);
    if (rc == DMJ_ENOTFOUND) {
        dmj__api_fail(c, DMJ__API_ERR_PERMISSION, DMJ__MSG_NO_PROJECT_ACCESS);
        return 1;
    }
    if (rc != 0) {
        dmj__api_internal(c, rc);
        return 1;
    }
    if (c->w->cfg.rate_limit) {
        unsigned wait = c->w->cfg.rate_limit(c->w->cfg.rate_limit_ctx, k->secure_value);
        if (wait != 0) {
            dmj__api_throttled(c, wait);
            return 1;
        }
    }
    return 0;
}

/* Django's split_domain_port + validate_host with ALLOWED_HOSTS = ["*"]: the lowered host
 * must match ^([a-z0-9.-]+|\[[a-f0-9]*:[a-f0-9\.:]+\])(:\d+)?$ ('$' also before a final
 * '\n'), and the domain, less one trailing '.', must not be empty. */
bool dmj__api_host_valid(const char *host, size_t len)
{
    bool newline = len > 0 && host[len - 1] == '\n';
    if (newline)
        len--;
    if (len == 0)
        return false;
    size_t i = 0, domain_end;
    if (host[0] == '[') {
        size_t j = 1;
        while (j < len && (strchr("0123456789abcdefABCDEF", host[j]) && host[j] != '\0'))
            j++;
        if (j >= len || host[j] != ':')
            return false;
        size_t k = j + 1, start = k;
        while (k < len && host[k] != '\0' && strchr("0123456789abcdefABCDEF.:", host[k]))
            k++;
        if (k == start || k >= len || host[k] != ']')
            return false;
        i = k + 1;
        domain_end = i;
    } else {
        while (i < len) {
            char ch = host[i];
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
            if (!ok)
                break;
            i++;
        }
        if (i == 0)
            return false;
        domain_end = i;
    }
    if (i < len) {
        if (host[i] != ':' || i + 1 == len)
            return false;
        for (size_t k = i + 1; k < len; k++)
            if (host[k] < '0' || host[k] > '9')
                return false;
    }
    if (host[0] == '[' || (newline && i == len))
        return true; /* the domain keeps its '\n' or ']': never empty */
    /* The domain is what precedes the port; one trailing '.' is dropped before the check
     * that it is not empty. */
    size_t dlen = domain_end;
    if (dlen > 0 && host[dlen - 1] == '.')
        dlen--;
    return dlen > 0;
}

/* The credential the request presents, as authenticate reads it: the Bearer token as sent, or
 * the last personal_api_key of the query. False when there is none. */
static bool credential(struct dmj__api_ctx *c, bool *bearer, const char **p, size_t *n)
{
    const struct dmj_str *auth = &c->req->authorization;
    if (auth->ptr && bearer_token(auth->ptr, auth->len, p, n)) {
        *bearer = true;
        return true;
    }
    const struct dmj_query *query = dmj__api_query(c);
    const struct dmj_query_param *qp = query ? dmj_query_last(query, "personal_api_key") : NULL;
    if (qp == NULL)
        return false;
    *bearer = false;
    *p = qp->value;
    *n = qp->value_len;
    return true;
}

/* Where the request's credential and team are remembered, in which state. */
struct auth_probe {
    struct dmj__api_auth_entry *slot;
    bool bearer;
    const char *cred;
    size_t cred_len;
    uint64_t hash, txnid;
};

/* False when the request is not one to remember (no credential, too long, a rate limiter
 * that must count it, asked again, not a GET or HEAD, a stream). */
static bool auth_probe(struct dmj__api_ctx *c, struct auth_probe *p)
{
    p->txnid = dmj_read_txnid(c->w->read);
    if (c->w->cfg.rate_limit != NULL || c->req->again || c->events || p->txnid == 0 ||
        (c->method != DMJ__API_GET && c->method != DMJ__API_HEAD) ||
        !credential(c, &p->bearer, &p->cred, &p->cred_len) ||
        p->cred_len + c->team_len > DMJ__API_AUTH_TEXT_MAX)
        return false;
    uint64_t h = p->bearer ? 0x100000001b3ULL : 0;
    for (size_t i = 0; i < p->cred_len; i++)
        h = (h ^ (unsigned char)p->cred[i]) * 0x100000001b3ULL;
    for (size_t i = 0; i < c->team_len; i++)
        h = (h ^ (unsigned char)c->team_seg[i]) * 0x100000001b3ULL;
    p->hash = h;
    p->slot = &c->w->auth[h % DMJ__API_AUTH_SLOTS];
    return true;
}

bool dmj__api_auth_recall(struct dmj__api_ctx *c)
{
    struct auth_probe p;
    if (!auth_probe(c, &p))
        return false;
    const struct dmj__api_auth_entry *e = p.slot;
    if (e->txnid != p.txnid || e->hash != p.hash || e->bearer != p.bearer ||
        e->cred_len != p.cred_len || e->team_len != c->team_len ||
        memcmp(e->text, p.cred, p.cred_len) != 0 ||
        memcmp(e->text + p.cred_len, c->team_seg, c->team_len) != 0)
        return false;
    c->user = e->user;
    c->team = e->team;
    c->key_digest = e->key_digest;
    memcpy(c->w->key.secure_value, e->secure_value, sizeof e->secure_value);
    return true;
}

void dmj__api_auth_remember(struct dmj__api_ctx *c)
{
    struct auth_probe p;
    if (!auth_probe(c, &p))
        return;
    struct dmj__api_auth_entry *e = p.slot;
    e->txnid = p.txnid;
    e->hash = p.hash;
    e->bearer = p.bearer;
    e->cred_len = p.cred_len;
    e->team_len = c->team_len;
    memcpy(e->text, p.cred, p.cred_len);
    memcpy(e->text + p.cred_len, c->team_seg, c->team_len);
    memcpy(e->secure_value, c->w->key.secure_value, sizeof e->secure_value);
    e->key_digest = c->key_digest;
    e->user = c->user;
    e->team = c->team;
    e->team.name = (struct dmj_str){NULL, 0};
}
