/* Tests of personal API key hashing, hash comparison and key generation. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dmj/identity.h"

static void test_hash(void)
{
    char h[DMJ_KEY_HASH_LEN + 1];
    /* Expected values from Python: "sha256$" + hashlib.sha256(key).hexdigest(). */
    dmj_key_hash("", 0, h);
    CHECK_EQ_STR(h, "sha256$e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    dmj_key_hash("abc", 3, h);
    CHECK_EQ_STR(h, "sha256$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *key = "phx_ko1MxY7xYbGmzEjclvnrTEj1FlwtmhyFTAIjmfS6ttFa3pG";
    dmj_key_hash(key, strlen(key), h);
    CHECK_EQ_STR(h, "sha256$36784bed2dc040e6849e58c0cf2b5917f516cb4c7a861556088ccacbfed87af1");
    CHECK_EQ_INT(strlen(h), DMJ_KEY_HASH_LEN);
    /* Only `len` bytes are hashed. */
    dmj_key_hash("abcdef", 3, h);
    CHECK_EQ_STR(h, "sha256$ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_equal(void)
{
    char a[DMJ_KEY_HASH_LEN + 1], b[DMJ_KEY_HASH_LEN + 1];
    dmj_key_hash("abc", 3, a);
    dmj_key_hash("abc", 3, b);
    CHECK(dmj_key_hash_equal(a, b));
    /* A difference anywhere, first or last character included, is seen. */
    for (unsigned i = 0; i < DMJ_KEY_HASH_LEN; i++) {
        memcpy(b, a, sizeof b);
        b[i] ^= 1;
        CHECK(!dmj_key_hash_equal(a, b));
        CHECK(!dmj_key_hash_equal(b, a));
    }
    dmj_key_hash("abd", 3, b);
    CHECK(!dmj_key_hash_equal(a, b));
    /* Wrong lengths are never equal, even when one is a prefix of the other. */
    memcpy(b, a, sizeof b);
    b[DMJ_KEY_HASH_LEN - 1] = '\0';
    CHECK(!dmj_key_hash_equal(a, b));
    CHECK(!dmj_key_hash_equal(b, b));
    CHECK(!dmj_key_hash_equal("", ""));
}

static int is_alnum(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

static void test_generate(void)
{
    enum { N = 2000 };
    static char keys[N][64];
    unsigned counts[256] = {0};
    unsigned bad = 0;
    for (unsigned i = 0; i < N; i++) {
        memset(keys[i], 'X', sizeof keys[i]);
        CHECK_EQ_INT(dmj_key_generate(keys[i]), 0);
        const char *k = keys[i];
        if (strlen(k) != 51 || memcmp(k, "phx_", 4) != 0)
            bad++;
        for (unsigned j = 4; j < 51 && k[j]; j++) {
            if (!is_alnum(k[j]))
                bad++;
            counts[(unsigned char)k[j]]++;
        }
    }
    CHECK_EQ_INT(bad, 0);
    /* No two keys alike. */
    unsigned dups = 0;
    for (unsigned i = 0; i < N; i++)
        for (unsigned j = i + 1; j < N; j++)
            dups += strcmp(keys[i], keys[j]) == 0;
    CHECK_EQ_INT(dups, 0);
    /* Every one of the 62 characters shows up about equally often: 94,000 draws, 1516 each
     * expected; a modulo bias (bytes 248..255 folded onto the first 8 letters) would add
     * ~3% to those, which this bound does not catch, but a broken alphabet or a stuck
     * generator is far outside it. */
    unsigned seen = 0, lo = ~0u, hi = 0;
    for (unsigned c = 0; c < 256; c++) {
        if (!counts[c])
            continue;
        seen++;
        lo = counts[c] < lo ? counts[c] : lo;
        hi = counts[c] > hi ? counts[c] : hi;
    }
    CHECK_EQ_INT(seen, 62);
    CHECK(lo > 1300);
    CHECK(hi < 1750);
    /* A generated key hashes like any other. */
    char h1[DMJ_KEY_HASH_LEN + 1], h2[DMJ_KEY_HASH_LEN + 1];
    dmj_key_hash(keys[0], strlen(keys[0]), h1);
    dmj_key_hash(keys[1], strlen(keys[1]), h2);
    CHECK(!dmj_key_hash_equal(h1, h2));
}

int main(void)
{
    test_hash();
    test_equal();
    test_generate();
    return check_done();
}
