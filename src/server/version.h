/** dmjd's version (DMJ_VERSION) and git commit (DMJ_COMMIT, "" outside git), from the
 * dmj_version.h the build generates; "unknown" for a file compiled without it (unit tests). */
#ifndef DMJD_VERSION_H
#define DMJD_VERSION_H

#if __has_include("dmj_version.h")
#include "dmj_version.h"
#else
#define DMJ_VERSION "unknown"
#define DMJ_COMMIT ""
#endif

#endif
