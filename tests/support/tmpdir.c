/* tmpdir.h: mkdtemp(3) under /tmp, and a depth-first removal relative to directory
 * descriptors (unlinkat(2)), which follows no symbolic link. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmpdir.h"

int tmpdir_make(const char *prefix, char *out, size_t cap)
{
    int n = snprintf(out, cap, "/tmp/%sXXXXXX", prefix);
    if (n < 0 || (size_t)n >= cap)
        return -ENAMETOOLONG;
    if (mkdtemp(out) == NULL)
        return -errno;
    return 0;
}

/* Removes `name` in the directory `at`, and first everything in it when it is a directory. */
static int remove_at(int at, const char *name)
{
    if (unlinkat(at, name, 0) == 0)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -errno;
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    DIR *d = fdopendir(fd);
    if (d == NULL) {
        int err = -errno;
        close(fd);
        return err;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (e == NULL) {
            if (errno != 0 && rc == 0)
                rc = -errno;
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        int one = remove_at(dirfd(d), e->d_name);
        if (one != 0 && rc == 0)
            rc = one; /* the rest are still tried */
    }
    closedir(d);
    if (unlinkat(at, name, AT_REMOVEDIR) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

int tmpdir_remove(const char *root)
{
    return remove_at(AT_FDCWD, root);
}
