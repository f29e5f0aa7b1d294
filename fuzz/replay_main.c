/* Replays every file under the given directories through a fuzz target, without libFuzzer. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return -1;
    }
    uint8_t *data = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            uint8_t *p = realloc(data, cap);
            if (!p) {
                free(data);
                fclose(f);
                return -1;
            }
            data = p;
        }
        size_t n = fread(data + len, 1, cap - len, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(data, len);
    free(data);
    return 0;
}

/* argv[1] is the target's corpus, which must exist; later folders (regressions) may be
 * missing. Fails when no input at all was replayed: a replay of nothing proves nothing. */
int main(int argc, char **argv)
{
    unsigned files = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            if (i == 1) {
                fprintf(stderr, "%s: no such corpus\n", argv[i]);
                return 1;
            }
            continue; /* a target may have no regressions yet */
        }
        if (!S_ISDIR(st.st_mode)) {
            files++;
            failed += replay_file(argv[i]) != 0;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (!d) {
            perror(argv[i]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], e->d_name);
            files++;
            failed += replay_file(path) != 0;
        }
        closedir(d);
    }
    printf("replayed %u inputs, %u unreadable\n", files, failed);
    if (files == 0) {
        fprintf(stderr, "no input replayed (an empty corpus?)\n");
        return 1;
    }
    return failed ? 1 : 0;
}
