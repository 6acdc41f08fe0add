/*
 * Helpers of the tests of src/store/readahead.c's VFSes (test_readahead.c,
 * test_walbehind.c) over real SQLite files. Header-only, as unit/oom.h: each test program
 * gets its own copy. Include after <cmocka.h> and <sqlite3.h>.
 */
#ifndef VH_TEST_STORE_SQLFILE_H
#define VH_TEST_STORE_SQLFILE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <unistd.h>

#include "store/readahead_int.h"

#define BODY_SIZE 2000 /* a row's body: two rows a 4 KiB page */

/* A new directory of its own, and the database file's path in it (t.db, not yet made). */
struct fixture {
    char dir[256];
    char path[300];
};

/* A fixture under $TMPDIR (or /tmp) named NAME-XXXXXX, in *state; -1 when it cannot be made. */
static inline int fixture_new(void **state, const char *name)
{
    const char *tmp = getenv("TMPDIR");
    struct fixture *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "%s/%s-XXXXXX", tmp && *tmp ? tmp : "/tmp", name);
    if (!mkdtemp(f->dir)) {
        free(f);
        return -1;
    }
    snprintf(f->path, sizeof(f->path), "%s/t.db", f->dir);
    *state = f;
    return 0;
}

/* Removes the database file at `path` and its companions (WAL, wal-index, journal). */
static inline void unlink_db(const char *path)
{
    const char *ext[] = {"", "-wal", "-shm", "-journal"};
    char p[400];
    size_t i;

    for (i = 0; i < sizeof(ext) / sizeof(ext[0]); i++) {
        snprintf(p, sizeof(p), "%s%s", path, ext[i]);
        unlink(p);
    }
}

/* Row `id`'s body in generation `gen`: bytes no other row or generation has at its place. */
static inline void body_of(int id, int gen, unsigned char *out)
{
    uint32_t x = (uint32_t)id * 2654435761u + (uint32_t)gen * 40503u + 1u;
    size_t i;

    for (i = 0; i < BODY_SIZE; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        out[i] = (unsigned char)x;
    }
}

/* Runs `sql`; a failure fails the test with SQLite's message. */
static inline void exec(sqlite3 *db, const char *sql)
{
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK)
        fail_msg("%s: %s", sql, msg ? msg : sqlite3_errstr(rc));
}

/* PRAGMA integrity_check says "ok" (it reads every page of the file). */
static inline void check_integrity(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;

    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
    sqlite3_finalize(st);
}

/* The VFS's counts for the connection's database file (VH__READAHEAD_FCNTL_STATS). */
static inline struct vh__readahead_stats stats_of(sqlite3 *db)
{
    struct vh__readahead_stats s;

    memset(&s, 0xff, sizeof(s));
    assert_int_equal(sqlite3_file_control(db, "main", VH__READAHEAD_FCNTL_STATS, &s), SQLITE_OK);
    return s;
}

#endif
