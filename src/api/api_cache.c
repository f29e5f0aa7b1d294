/* A worker's cache of rendered 200 answers, keyed on everything an answer depends on: the
 * committed store state (txnid) and every field of the request but If-None-Match and GET/HEAD.
 *
 * Why it is correct: an answer is a function of the store's committed state, the request
 * and the worker's immutable configuration. A commit (an import, a new key, a prune) makes
 * a new txnid, so nothing cached before it is ever served after it. The configuration's one
 * stateful part, the rate limiter, must see every request: workers that have one keep no
 * cache. Why it pays: a dashboard polls the same page with the same key; a hit costs a hash
 * and a compare of the request instead of the key hash, four look-ups and a render. */
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

/* The largest answer kept (the `running` list of a busy team is ~170 KB; a list page of
 * 1,000 jobs ~420 KB), and the memory a worker's cache may hold: every slot's key and body
 * buffers, counted by capacity (what is really allocated). Storing an answer that would pass
 * the budget first frees other slots, largest first, so the cache never holds more than
 * CACHE_BUDGET per worker (2 workers: 8 MiB), and a warm worker whose answers fit never
 * allocates (31 list pages of 42 KB in 64 KiB buffers and a `running` of 170 KB in 256 KiB
 * take 2.2 MiB). */
#define CACHE_ENTRY_MAX ((size_t)1 << 20)
#define CACHE_BUDGET ((size_t)4 << 20)

/* Appends one field, its length first (SIZE_MAX for an absent one) so that fields cannot
 * run together. */
static int add_field(struct dmj_buf *b, const struct dmj_str *s)
{
    size_t len = s->ptr ? s->len : SIZE_MAX;
    int rc = dmj_buf_add(b, &len, sizeof len);
    if (rc == 0 && s->ptr)
        rc = dmj_buf_add(b, s->ptr, s->len);
    return rc;
}

/* 64-bit FNV-1a over the serialised request. */
static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* A lent buffer larger than this is freed when it comes back rather than kept spare. */
#define LEND_KEEP_MAX ((size_t)1 << 20)

static void lender_unref(struct dmj__api_lender *l)
{
    if (--l->refs > 0)
        return;
    for (unsigned i = 0; i < l->n; i++) {
        free(l->spare[i]->base);
        free(l->spare[i]);
    }
    free(l);
}

/* Drops one reference; the last frees the blob, or gives a lent one back to its lender. */
static void blob_release(struct dmj__api_blob *b)
{
    if (!b || --b->refs > 0)
        return;
    struct dmj__api_lender *l = b->lender;
    if (l == NULL) {
        free(b);
        return;
    }
    if (!l->worker_gone && l->n < DMJ__API_LEND_SPARES && b->cap <= LEND_KEEP_MAX) {
        l->spare[l->n++] = b;
    } else {
        free(b->base);
        free(b);
    }
    lender_unref(l);
}

void dmj__api_blob_release(struct dmj__api_blob *b)
{
    blob_release(b);
}

struct dmj__api_lender *dmj__api_lender_new(void)
{
    struct dmj__api_lender *l = calloc(1, sizeof *l);
    if (l)
        l->refs = 1;
    return l;
}

void dmj__api_lender_dispose(struct dmj__api_lender *l)
{
    if (l == NULL)
        return;
    l->worker_gone = true;
    for (unsigned i = 0; i < l->n; i++) {
        free(l->spare[i]->base);
        free(l->spare[i]);
    }
    l->n = 0;
    lender_unref(l);
}

struct dmj__api_blob *dmj__api_lend(struct dmj__api_lender *l, struct dmj_buf *body,
                                    const char *data, size_t len)
{
    struct dmj__api_blob *b = l->n > 0 ? l->spare[--l->n] : calloc(1, sizeof *b);
    if (b == NULL)
        return NULL;
    char *spare = b->base;
    size_t spare_cap = b->cap, cap = body->cap;
    b->base = body->data;
    b->cap = cap;
    b->data = (char *)data;
    b->len = len;
    b->refs = 1;
    b->lender = l;
    l->refs++;
    /* the worker renders its next answer into the spare, or a new buffer as large */
    body->data = spare;
    body->cap = spare ? spare_cap : 0;
    dmj_buf_reset(body);
    if (dmj_buf_reserve(body, cap > 0 ? cap - 1 : 0) != 0)
        dmj_buf_reset(body); /* it grows again as it is written */
    return b;
}

/* Lets go of a slot's body: freed now unless a response is still being sent from it. */
static void drop_body(struct dmj__api_cache_entry *e)
{
    blob_release(e->body);
    e->body = NULL;
}

void dmj__api_cache_init(struct dmj__api_cache *cache)
{
    memset(cache, 0, sizeof *cache);
    dmj_buf_init(&cache->probe, DMJ__API_CACHE_KEY_MAX);
    for (size_t i = 0; i < DMJ__API_CACHE_SLOTS; i++)
        dmj_buf_init(&cache->slot[i].key, DMJ__API_CACHE_KEY_MAX);
}

void dmj__api_cache_dispose(struct dmj__api_cache *cache)
{
    dmj_buf_dispose(&cache->probe);
    for (size_t i = 0; i < DMJ__API_CACHE_SLOTS; i++) {
        dmj_buf_dispose(&cache->slot[i].key);
        drop_body(&cache->slot[i]);
    }
}

void *dmj_api_body_hold(const struct dmj_api_response *res)
{
    struct dmj__api_blob *b = (struct dmj__api_blob *)res->body_owner;
    if (b == NULL || res->body != b->data)
        return NULL;
    b->refs++;
    return b;
}

void dmj_api_body_release(void *held)
{
    blob_release(held);
}

bool dmj__api_cache_prepare(struct dmj__api_cache *cache, const struct dmj_api_request *req,
                            uint64_t txnid)
{
    struct dmj_buf *b = &cache->probe;
    unsigned char tls = req->tls ? 1 : 0;
    int rc;

    cache->ready = false;
    dmj_buf_reset(b);
    rc = dmj_buf_add(b, &txnid, sizeof txnid);
    if (rc == 0)
        rc = dmj_buf_add(b, &tls, 1);
    if (rc == 0)
        rc = add_field(b, &req->path);
    if (rc == 0)
        rc = add_field(b, &req->query);
    if (rc == 0)
        rc = add_field(b, &req->authorization);
    if (rc == 0)
        rc = add_field(b, &req->host);
    if (rc == 0)
        rc = add_field(b, &req->forwarded_proto);
    if (rc != 0)
        return false; /* too large to be worth keeping (or no memory): answer uncached */
    cache->hash = hash_bytes(b->data, b->len);
    cache->ready = true;
    return true;
}

const struct dmj__api_cache_entry *dmj__api_cache_find(const struct dmj__api_cache *cache)
{
    if (!cache->ready)
        return NULL;
    const struct dmj__api_cache_entry *e = &cache->slot[cache->hash % DMJ__API_CACHE_SLOTS];
    if (!e->used || e->hash != cache->hash || e->key.len != cache->probe.len ||
        memcmp(e->key.data, cache->probe.data, cache->probe.len) != 0)
        return NULL;
    return e;
}

/* The memory a slot holds (a body a response still holds is no longer the slot's). */
static size_t slot_bytes(const struct dmj__api_cache_entry *e)
{
    return e->key.cap + (e->body ? e->body->cap : 0);
}

/* Frees other slots, the largest first, until the memory held besides slot `keep` plus
 * `need` fits the budget. */
static void make_room(struct dmj__api_cache *cache, size_t keep, size_t need)
{
    for (;;) {
        size_t held = 0, victim = keep, victim_bytes = 0;
        for (size_t i = 0; i < DMJ__API_CACHE_SLOTS; i++) {
            size_t n = slot_bytes(&cache->slot[i]);
            if (i == keep)
                continue;
            held += n;
            if (n > victim_bytes) {
                victim = i;
                victim_bytes = n;
            }
        }
        if (victim == keep || held + need <= CACHE_BUDGET)
            return;
        struct dmj__api_cache_entry *v = &cache->slot[victim];
        v->used = false;
        dmj_buf_dispose(&v->key);
        drop_body(v);
    }
}

/* What a buffer of capacity `cap` holds once it has room for `len` bytes and a NUL: its
 * capacity doubles (from 256) until it does, up to max + 1 (buf.c). An upper bound. */
static size_t grown_cap(size_t cap, size_t len, size_t max)
{
    if (len + 1 <= cap)
        return cap;
    size_t grown = 2 * (len + 1) > 256 ? 2 * (len + 1) : 256;
    return grown < max + 1 ? grown : max + 1;
}

const struct dmj__api_blob *dmj__api_cache_store(struct dmj__api_cache *cache, const char *body,
                                                 size_t len, const char *etag)
{
    if (!cache->ready || len > CACHE_ENTRY_MAX)
        return NULL;
    size_t idx = cache->hash % DMJ__API_CACHE_SLOTS;
    struct dmj__api_cache_entry *e = &cache->slot[idx];
    e->used = false;
    /* a body a response is still sending from is left to it, and a lent one goes back to its
     * worker; else it is reused in place */
    if (e->body && (e->body->refs > 1 || e->body->lender))
        drop_body(e);
    size_t cap = e->body ? e->body->cap : 0;
    make_room(cache, idx,
              grown_cap(e->key.cap, cache->probe.len, e->key.max) +
                  grown_cap(cap, len, CACHE_ENTRY_MAX));
    dmj_buf_reset(&e->key);
    if (dmj_buf_add(&e->key, cache->probe.data, cache->probe.len) != 0)
        return NULL;
    if (!e->body || len > cap) {
        drop_body(e);
        cap = grown_cap(cap, len, CACHE_ENTRY_MAX);
        e->body = malloc(sizeof *e->body + cap);
        if (!e->body)
            return NULL;
        e->body->refs = 1;
        e->body->cap = cap;
        e->body->data = e->body->own;
        e->body->base = NULL;
        e->body->lender = NULL;
    }
    memcpy(e->body->data, body, len);
    e->body->len = len;
    e->hash = cache->hash;
    memcpy(e->etag, etag, sizeof e->etag);
    e->etag[sizeof e->etag - 1] = '\0';
    e->used = true;
    return e->body;
}

bool dmj__api_cache_adopt(struct dmj__api_cache *cache, struct dmj__api_blob *body,
                          const char *etag)
{
    if (!cache->ready || body->len > CACHE_ENTRY_MAX)
        return false;
    size_t idx = cache->hash % DMJ__API_CACHE_SLOTS;
    struct dmj__api_cache_entry *e = &cache->slot[idx];
    e->used = false;
    drop_body(e);
    make_room(cache, idx, grown_cap(e->key.cap, cache->probe.len, e->key.max) + body->cap);
    dmj_buf_reset(&e->key);
    if (dmj_buf_add(&e->key, cache->probe.data, cache->probe.len) != 0)
        return false;
    body->refs++;
    e->body = body;
    e->hash = cache->hash;
    memcpy(e->etag, etag, sizeof e->etag);
    e->etag[sizeof e->etag - 1] = '\0';
    e->used = true;
    return true;
}
