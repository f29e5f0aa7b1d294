/* Personal API keys: the stored hash form, its constant-time comparison, and new random keys. */
#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "dmj/identity.h"

void dmj_key_hash(const char *key, size_t len, char out[DMJ_KEY_HASH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)key, len, md);
    memcpy(out, "sha256$", 7);
    for (unsigned i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[7 + 2 * i] = hex[md[i] >> 4];
        out[8 + 2 * i] = hex[md[i] & 0xf];
    }
    out[DMJ_KEY_HASH_LEN] = '\0';
}

bool dmj_key_hash_equal(const char *a, const char *b)
{
    /* The lengths are not secret (every real hash has the same one); only the contents
     * are compared in constant time. strnlen keeps a missing NUL from being read past. */
    if (strnlen(a, DMJ_KEY_HASH_LEN + 1) != DMJ_KEY_HASH_LEN ||
        strnlen(b, DMJ_KEY_HASH_LEN + 1) != DMJ_KEY_HASH_LEN)
        return false;
    return CRYPTO_memcmp(a, b, DMJ_KEY_HASH_LEN) == 0;
}

#define KEY_PREFIX "phx_"
#define KEY_RANDOM_CHARS 47

int dmj_key_generate(char out[64])
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    /* 62 * 4 = 248: bytes at or above it are dropped so that each letter is equally likely. */
    enum { ALPHABET = sizeof alphabet - 1, LIMIT = ALPHABET * (256 / ALPHABET) };
    char key[sizeof KEY_PREFIX - 1 + KEY_RANDOM_CHARS + 1];
    unsigned char rnd[64];
    size_t n = sizeof KEY_PREFIX - 1;

    memcpy(key, KEY_PREFIX, n);
    while (n < sizeof KEY_PREFIX - 1 + KEY_RANDOM_CHARS) {
        if (RAND_bytes(rnd, sizeof rnd) != 1) {
            OPENSSL_cleanse(key, sizeof key);
            OPENSSL_cleanse(rnd, sizeof rnd);
            return -EIO; /* the random generator is not seeded or failed */
        }
        for (size_t i = 0; i < sizeof rnd && n < sizeof KEY_PREFIX - 1 + KEY_RANDOM_CHARS; i++) {
            if (rnd[i] < LIMIT)
                key[n++] = alphabet[rnd[i] % ALPHABET];
        }
    }
    key[n] = '\0';
    memcpy(out, key, n + 1);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(rnd, sizeof rnd);
    return 0;
}
