/** Held requests (long-polls and event streams) per API key and in all, counted across every
 * worker: the bounds that keep parked work finite. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "slots.h"

#define KEY_MAX 80 /* "sha256$" + 64 hex digits, with room */

struct slot {
    char key[KEY_MAX]; /* "" = free */
    unsigned open;
};

struct dmjd_slots {
    pthread_mutex_t lock;
    unsigned per_key; /* 0: no per-key bound */
    unsigned total;   /* held in all, at most max_total */
    unsigned max_total;
    size_t capacity;
    struct slot *slots;
};

int dmjd_slots_new(unsigned per_key, unsigned total, size_t capacity, struct dmjd_slots **out)
{
    struct dmjd_slots *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return -ENOMEM;
    s->slots = calloc(capacity, sizeof(s->slots[0]));
    if (s->slots == NULL) {
        free(s);
        return -ENOMEM;
    }
    pthread_mutex_init(&s->lock, NULL);
    s->per_key = per_key;
    s->max_total = total;
    s->capacity = capacity;
    *out = s;
    return 0;
}

void dmjd_slots_free(struct dmjd_slots *s)
{
    if (s == NULL)
        return;
    pthread_mutex_destroy(&s->lock);
    free(s->slots);
    free(s);
}

/* The key's entry, or a free one to take (`*free_out`), under the lock. Streams open and
 * close far less often than requests come, so a scan of the table is cheap enough. */
static struct slot *find(struct dmjd_slots *s, const char *key, struct slot **free_out)
{
    *free_out = NULL;
    for (size_t i = 0; i < s->capacity; i++) {
        struct slot *e = &s->slots[i];
        if (e->key[0] == '\0') {
            if (*free_out == NULL)
                *free_out = e;
        } else if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

unsigned dmjd_slots_acquire(void *slots, const char *secure_value)
{
    struct dmjd_slots *s = slots;
    struct slot *free_slot;
    unsigned wait = 1;
    if (strlen(secure_value) >= KEY_MAX)
        return wait;
    pthread_mutex_lock(&s->lock);
    struct slot *e = find(s, secure_value, &free_slot);
    if (e == NULL && free_slot != NULL) {
        e = free_slot;
        strcpy(e->key, secure_value);
        e->open = 0;
    }
    /* A full table refuses too: every key with a stream is counted, none goes unbounded. */
    if (e != NULL && (s->per_key == 0 || e->open < s->per_key) && s->total < s->max_total) {
        e->open++;
        s->total++;
        wait = 0;
    } else if (e != NULL && e->open == 0) {
        e->key[0] = '\0'; /* taken just now and refused: free again */
    }
    pthread_mutex_unlock(&s->lock);
    return wait;
}

void dmjd_slots_release(struct dmjd_slots *s, const char *secure_value)
{
    struct slot *free_slot;
    pthread_mutex_lock(&s->lock);
    struct slot *e = find(s, secure_value, &free_slot);
    if (e != NULL && e->open > 0) {
        s->total--;
        if (--e->open == 0)
            e->key[0] = '\0';
    }
    pthread_mutex_unlock(&s->lock);
}
