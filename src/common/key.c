/* Personal API keys: the stored hash form, its constant-time comparison, and new random keys. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "dmj/identity.h"

/* Every request hashes its key. OpenSSL 3's one-shot SHA256() fetches the algorithm and
 * allocates a context (three allocations, ~6,000 instructions) each time, so each thread
 * keeps a fetched SHA-256 and a context for it instead, found through a thread-specific key
 * that frees them when the thread exits. The key is created once (pthread_once) and never
 * changes afterwards. */
struct hasher {
    EVP_MD *md;
    EVP_MD_CTX *ctx;
};

static pthread_once_t hasher_once = PTHREAD_ONCE_INIT;
static pthread_key_t hasher_key;
static int hasher_key_rc = -1;

static void hasher_free(void *p)
{
    struct hasher *h = p;
    EVP_MD_CTX_free(h->ctx);
    EVP_MD_free(h->md);
    free(h);
}

static void hasher_key_create(void)
{
    hasher_key_rc = pthread_key_create(&hasher_key, hasher_free);
}

/* This thread's hasher, made on first use; NULL when it cannot be made. */
static struct hasher *thread_hasher(void)
{
    if (pthread_once(&hasher_once, hasher_key_create) != 0 || hasher_key_rc != 0)
        return NULL;
    struct hasher *h = pthread_getspecific(hasher_key);
    if (h != NULL)
        return h;
    h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->md = EVP_MD_fetch(NULL, "SHA256", NULL);
    h->ctx = EVP_MD_CTX_new();
    if (h->md == NULL || h->ctx == NULL || pthread_setspecific(hasher_key, h) != 0) {
        hasher_free(h);
        return NULL;
    }
    return h;
}

/* SHA-256 of the key through this thread's context; falls back on the one-shot call. */
static void sha256(const char *key, size_t len, unsigned char md[SHA256_DIGEST_LENGTH])
{
    struct hasher *h = thread_hasher();
    unsigned int n = 0;
    if (h != NULL && EVP_DigestInit_ex2(h->ctx, h->md, NULL) == 1 &&
        EVP_DigestUpdate(h->ctx, key, len) == 1 && EVP_DigestFinal_ex(h->ctx, md, &n) == 1 &&
        n == SHA256_DIGEST_LENGTH)
        return;
    SHA256((const unsigned char *)key, len, md);
}

void dmj_key_hash(const char *key, size_t len, char out[DMJ_KEY_HASH_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[SHA256_DIGEST_LENGTH];
    sha256(key, len, md);
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
