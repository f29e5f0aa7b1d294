/** The rate limiter's table: a key is never forgotten while its requests still count. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "ratelimit.h"

#define MINUTE_US 60000000ull

static void key_name(char *buf, size_t size, unsigned i)
{
    snprintf(buf, size, "sha256$%064u", i);
}

/* More active keys than the table holds: the keys it holds keep their counts, and a key
 * that finds no room is refused (not given some other key's slot). */
static void test_full_table_forgets_no_active_key(void)
{
    struct dmjd_rate_rule rules[1] = {{.count = 3, .period_us = MINUTE_US}};
    struct dmjd_ratelimit *rl = NULL;
    CHECK(dmjd_ratelimit_new(rules, 1, 16, &rl) == 0); /* 16 slots */
    char key[96];
    uint64_t now = 1000 * MINUTE_US;
    unsigned admitted = 0, refused = 0;
    for (unsigned i = 0; i < 64; i++) {
        key_name(key, sizeof(key), i);
        if (dmjd_ratelimit_check_at(rl, key, now) == 0)
            admitted++;
        else
            refused++;
    }
    CHECK_EQ_INT(admitted, 16);
    CHECK_EQ_INT(refused, 48);
    /* Every admitted key still has its count: two more go through, the third is refused,
     * however many other keys asked in between. */
    unsigned limited = 0;
    for (unsigned i = 0; i < 64; i++) {
        key_name(key, sizeof(key), i);
        if (dmjd_ratelimit_check_at(rl, key, now + 1) != 0)
            continue; /* one of the refused keys */
        CHECK(dmjd_ratelimit_check_at(rl, key, now + 2) == 0);
        unsigned wait = dmjd_ratelimit_check_at(rl, key, now + 3);
        CHECK(wait > 0 && wait <= 61);
        limited++;
    }
    CHECK_EQ_INT(limited, 16);
    /* Once a period has passed without requests, the slots are free for new keys. */
    key_name(key, sizeof(key), 1000);
    CHECK(dmjd_ratelimit_check_at(rl, key, now + 3 + 2 * MINUTE_US) == 0);
    dmjd_ratelimit_free(rl);
}

/* A refused new key is told when a slot frees: within the longest period. */
static void test_refusal_says_when(void)
{
    struct dmjd_rate_rule rules[2] = {{.count = 100, .period_us = 1000000},
                                      {.count = 1000, .period_us = MINUTE_US}};
    struct dmjd_ratelimit *rl = NULL;
    CHECK(dmjd_ratelimit_new(rules, 2, 16, &rl) == 0);
    char key[96];
    uint64_t now = 5 * MINUTE_US;
    unsigned last = 0;
    for (unsigned i = 0; i < 40; i++) {
        key_name(key, sizeof(key), i);
        last = dmjd_ratelimit_check_at(rl, key, now);
    }
    CHECK(last > 0 && last <= 62);
    dmjd_ratelimit_free(rl);
}

int main(void)
{
    test_full_table_forgets_no_active_key();
    test_refusal_says_when();
    return check_done();
}
