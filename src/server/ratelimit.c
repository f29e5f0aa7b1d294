/** The optional per-key rate limit (--rate-limit): a bounded table shared by all workers.
 *
 * DRF counts the requests of the last period from a log of timestamps; with a log per key
 * per rule (4800 entries for 4800/hour) that does not stay small, so each rule keeps a ring
 * of per-slice counters instead: the period cut into SLICES slices, each slice remembering
 * how many requests it let through and when the last of them came. A slice's requests count
 * until a whole period has passed since that last one, so no window of one period ever
 * holds more than `count`, and a refused request is told when the oldest slice stops
 * counting: DRF's answer, late by at most the spread of one slice.
 *
 * The table never grows: a new key takes an empty slot among the few its hash points to, or
 * one whose counts have all expired. When every one of them still counts requests, the new
 * key is refused (429) until one expires, rather than given a slot whose counts it would
 * reset: a table that forgot active keys would let a client rotate through more keys than
 * it holds and never be limited. Size the table (--rate-limit-keys) for the keys active in
 * the longest period. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"
#include "ratelimit.h"

#define KEY_MAX 96 /* "sha256$" + 64 hex digits fits with room to spare */
#define PROBES 16  /* slots looked at per key: bounds the work under the lock */
#define SLICES 60  /* slices per period: one second of a minute, one minute of an hour */
/* A slice counts for at most one period after its end, so SLICES + 1 of them are live. */
#define RING (SLICES + 1)

struct rule_state {
    uint64_t head;           /* absolute index of the newest slice in the ring */
    uint32_t counts[RING];   /* requests let through per slice */
    uint32_t last_off[RING]; /* when the last of them came, µs after the slice's start */
};

struct slot {
    bool used;
    char key[KEY_MAX];
    uint64_t last_us;
    struct rule_state rules[DMJD_RATE_MAX_RULES];
};

struct dmjd_ratelimit {
    pthread_mutex_t lock;
    struct dmjd_rate_rule rules[DMJD_RATE_MAX_RULES];
    uint64_t slice_us[DMJD_RATE_MAX_RULES];
    unsigned n_rules;
    uint64_t longest_us; /* the longest rule's period: how long a request counts */
    size_t mask;
    struct slot *slots;
};

static int parse_rule(const char *s, size_t len, struct dmjd_rate_rule *out)
{
    size_t i = 0;
    uint64_t count = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        count = count * 10 + (uint64_t)(s[i] - '0');
        if (count > 1000000000u)
            return DMJ_EINVAL;
        i++;
    }
    if (i == 0 || count == 0 || i >= len || s[i] != '/' || i + 1 >= len)
        return DMJ_EINVAL;
    uint64_t period_s;
    /* DRF reads only the unit's first letter ("m", "min", "minute" are all minutes). */
    switch (s[i + 1]) {
    case 's':
        period_s = 1;
        break;
    case 'm':
        period_s = 60;
        break;
    case 'h':
        period_s = 3600;
        break;
    case 'd':
        period_s = 86400;
        break;
    default:
        return DMJ_EINVAL;
    }
    for (size_t j = i + 1; j < len; j++) {
        if (s[j] < 'a' || s[j] > 'z')
            return DMJ_EINVAL;
    }
    out->count = (unsigned)count;
    out->period_us = period_s * 1000000u;
    return 0;
}

int dmjd_ratelimit_parse(const char *spec, struct dmjd_rate_rule *rules, unsigned *n_out)
{
    struct dmjd_rate_rule tmp[DMJD_RATE_MAX_RULES];
    unsigned n = 0;
    const char *p = spec;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
        if (n == DMJD_RATE_MAX_RULES)
            return DMJ_EINVAL;
        int rc = parse_rule(p, len, &tmp[n]);
        if (rc != 0)
            return rc;
        n++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    memcpy(rules, tmp, n * sizeof(tmp[0]));
    *n_out = n;
    return 0;
}

int dmjd_ratelimit_new(const struct dmjd_rate_rule *rules, unsigned n, size_t capacity,
                       struct dmjd_ratelimit **out)
{
    if (n == 0 || n > DMJD_RATE_MAX_RULES || capacity == 0 || capacity > ((size_t)1 << 24))
        return DMJ_EINVAL;
    size_t cap = PROBES;
    while (cap < capacity)
        cap <<= 1;
    struct dmjd_ratelimit *rl = calloc(1, sizeof(*rl));
    if (rl == NULL)
        return -ENOMEM;
    rl->slots = calloc(cap, sizeof(rl->slots[0]));
    if (rl->slots == NULL) {
        free(rl);
        return -ENOMEM;
    }
    int rc = pthread_mutex_init(&rl->lock, NULL);
    if (rc != 0) {
        free(rl->slots);
        free(rl);
        return -rc;
    }
    memcpy(rl->rules, rules, n * sizeof(rules[0]));
    rl->n_rules = n;
    /* Rounded up, so that SLICES slices cover at least the period. */
    for (unsigned r = 0; r < n; r++) {
        rl->slice_us[r] = (rules[r].period_us + SLICES - 1) / SLICES;
        /* a slice's last request counts up to one slice past the period's end */
        if (rules[r].period_us + rl->slice_us[r] > rl->longest_us)
            rl->longest_us = rules[r].period_us + rl->slice_us[r];
    }
    rl->mask = cap - 1;
    *out = rl;
    return 0;
}

void dmjd_ratelimit_free(struct dmjd_ratelimit *rl)
{
    if (rl == NULL)
        return;
    pthread_mutex_destroy(&rl->lock);
    free(rl->slots);
    free(rl);
}

static uint64_t hash_key(const char *s)
{
    uint64_t h = 14695981039346656037u; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211u;
    }
    return h;
}

/* The key's slot, or a slot given over to it with nothing counted, or NULL when every slot
 * the key may take still counts requests (`*retry_us` then says when the first stops).
 * Called under the lock. */
static struct slot *find_slot(struct dmjd_ratelimit *rl, const char *key, uint64_t now_us,
                              uint64_t *retry_us)
{
    uint64_t h = hash_key(key);
    struct slot *victim = NULL;
    uint64_t soonest = UINT64_MAX;
    for (size_t i = 0; i < PROBES; i++) {
        struct slot *s = &rl->slots[(h + i) & rl->mask];
        if (!s->used) {
            /* Slots are never emptied, so the key cannot sit past an empty one. */
            victim = s;
            break;
        }
        if (strncmp(s->key, key, KEY_MAX - 1) == 0)
            return s;
        /* Its last request no longer counts under any rule: nothing is forgotten. */
        uint64_t expires = s->last_us + rl->longest_us;
        if (expires <= now_us) {
            if (victim == NULL || s->last_us < victim->last_us)
                victim = s;
        } else if (expires - now_us < soonest) {
            soonest = expires - now_us;
        }
    }
    if (victim == NULL) {
        *retry_us = soonest;
        return NULL;
    }
    memset(victim, 0, sizeof(*victim));
    victim->used = true;
    size_t n = strnlen(key, KEY_MAX - 1);
    memcpy(victim->key, key, n);
    victim->key[n] = '\0';
    return victim;
}

/* Moves the ring forward to slice `now`, clearing the slices that fell out of it. */
static void advance(struct rule_state *st, uint64_t now)
{
    if (now <= st->head)
        return;
    if (now - st->head >= RING) {
        memset(st->counts, 0, sizeof(st->counts));
        memset(st->last_off, 0, sizeof(st->last_off));
    } else {
        for (uint64_t k = st->head + 1; k <= now; k++) {
            st->counts[k % RING] = 0;
            st->last_off[k % RING] = 0;
        }
    }
    st->head = now;
}

/* Microseconds until a request fits under rule `r` again, 0 if it fits now. */
static uint64_t rule_wait(const struct dmjd_ratelimit *rl, unsigned r, struct rule_state *st,
                          uint64_t now_us)
{
    uint64_t slice = rl->slice_us[r];
    uint64_t now = now_us / slice;
    advance(st, now);
    uint64_t total = 0, wait = UINT64_MAX;
    uint64_t first = now >= RING - 1 ? now - (RING - 1) : 0;
    for (uint64_t k = first; k <= now; k++) {
        uint32_t c = st->counts[k % RING];
        if (c == 0)
            continue;
        uint64_t expires = k * slice + st->last_off[k % RING] + rl->rules[r].period_us;
        if (expires <= now_us)
            continue;
        total += c;
        if (expires - now_us < wait)
            wait = expires - now_us;
    }
    /* Never more than `count` are counted, so freeing any slice makes room for one. */
    return total < rl->rules[r].count ? 0 : wait;
}

unsigned dmjd_ratelimit_check_at(struct dmjd_ratelimit *rl, const char *secure_value,
                                 uint64_t now_us)
{
    uint64_t wait_us = 0;
    pthread_mutex_lock(&rl->lock);
    struct slot *s = find_slot(rl, secure_value, now_us, &wait_us);
    if (s == NULL) {
        pthread_mutex_unlock(&rl->lock);
        return wait_us / 1000000u + 1;
    }
    s->last_us = now_us;
    for (unsigned r = 0; r < rl->n_rules; r++) {
        uint64_t w = rule_wait(rl, r, &s->rules[r], now_us);
        if (w > wait_us)
            wait_us = w;
    }
    /* A refused request is not counted, as with DRF. */
    if (wait_us == 0) {
        for (unsigned r = 0; r < rl->n_rules; r++) {
            struct rule_state *st = &s->rules[r];
            st->counts[st->head % RING]++;
            st->last_off[st->head % RING] = (uint32_t)(now_us - st->head * rl->slice_us[r]);
        }
    }
    pthread_mutex_unlock(&rl->lock);
    if (wait_us == 0)
        return 0;
    uint64_t secs = (wait_us + 999999u) / 1000000u;
    return secs > 0xffffffffu ? 0xffffffffu : (unsigned)secs;
}

unsigned dmjd_ratelimit_peek_at(struct dmjd_ratelimit *rl, const char *name, uint64_t now_us)
{
    uint64_t h = hash_key(name);
    uint64_t wait_us = 0;
    pthread_mutex_lock(&rl->lock);
    for (size_t i = 0; i < PROBES; i++) {
        struct slot *s = &rl->slots[(h + i) & rl->mask];
        if (!s->used)
            break;
        if (strncmp(s->key, name, KEY_MAX - 1) != 0)
            continue;
        for (unsigned r = 0; r < rl->n_rules; r++) {
            uint64_t w = rule_wait(rl, r, &s->rules[r], now_us);
            if (w > wait_us)
                wait_us = w;
        }
        break;
    }
    pthread_mutex_unlock(&rl->lock);
    uint64_t secs = (wait_us + 999999u) / 1000000u;
    return secs > 0xffffffffu ? 0xffffffffu : (unsigned)secs;
}

unsigned dmjd_ratelimit_check(void *rl, const char *secure_value)
{
    return dmjd_ratelimit_check_at(rl, secure_value, dmjd_now_us());
}

unsigned dmjd_ratelimit_auth_gate(void *rl, const char *client, bool failed)
{
    if (!failed)
        return dmjd_ratelimit_peek_at(rl, client, dmjd_now_us());
    (void)dmjd_ratelimit_check_at(rl, client, dmjd_now_us());
    return 0;
}
