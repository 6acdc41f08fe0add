/*
 * What more than one bench_* program needs. Header-only: each program is one source file
 * (CMakeLists.txt builds every bench/bench_*.c on its own).
 */
#ifndef VH_BENCH_COMMON_H
#define VH_BENCH_COMMON_H

#include <stdio.h>

#include <vocohook/buf.h>

/* Appends the whole file at `path` to `out` (bounded by out's max). Returns 0 or -1. */
static inline int bench_read_file(const char *path, struct vh_buf *out)
{
    char chunk[8192];
    FILE *f = fopen(path, "rb");
    size_t n;
    int rc = 0;

    if (!f)
        return -1;
    for (;;) {
        n = fread(chunk, 1, sizeof(chunk), f);
        if (n && vh_buf_add(out, chunk, n) < 0) {
            rc = -1;
            break;
        }
        if (n < sizeof(chunk))
            break;
    }
    if (ferror(f))
        rc = -1;
    fclose(f);
    return rc;
}

#endif
