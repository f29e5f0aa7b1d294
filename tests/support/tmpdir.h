/* Temporary directories for the unit tests and fuzz targets: each makes its own under /tmp
 * and removes it, with everything in it, when it is done. */
#ifndef DMJ_TEST_TMPDIR_H
#define DMJ_TEST_TMPDIR_H

#include <stddef.h>

/** Creates a new directory /tmp/<prefix>XXXXXX (six random characters) and writes its path to
 * `out` (`cap` bytes): 0, or -errno (-ENAMETOOLONG when the path does not fit). */
int tmpdir_make(const char *prefix, char *out, size_t cap) __attribute__((warn_unused_result));

/** Removes `root` and everything below it, following no symbolic link: 0, or -errno of the
 * first entry that could not be removed (the rest are still tried). */
int tmpdir_remove(const char *root);

#endif
