/*
 * Writing the WAL behind (src/store/readahead_int.h) over real SQLite files: a commit's
 * frames reach the file in a few writes, all of them before the commit's sync; every other
 * connection, and a copy of the files taken right after a commit (a crash), reads every
 * committed row; a run a rolled-back transaction left never lands over another
 * connection's commit; a run that cannot be written (a file size limit: a real EFBIG) fails
 * its commit and loses nothing committed before it.
 *
 * Under the VFSes sits a recording VFS, registered as the default before they are, so that
 * they wrap it: it logs what reaches the system's VFS for each WAL file (writes and syncs).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include <vocohook/alloc.h>

#include "store/readahead_int.h"
#include "unit/oom.h"
#include "unit/store/sqlfile.h"

#define LOG_MAX 4096

/* ---- the recording VFS: the system's, with every WAL's writes and syncs logged ---------- */

struct rec_op {
    char op; /* 'w': a write, 's': a sync */
    sqlite3_int64 off;
    int amt;
};

static struct rec_op rec_log[LOG_MAX];
static size_t rec_n;
static sqlite3_vfs *rec_root;

struct rec_file {
    sqlite3_file base;
    sqlite3_file *real; /* after this, in the same allocation */
    bool wal;
};

static sqlite3_file *real_of(sqlite3_file *f)
{
    return ((struct rec_file *)f)->real;
}

static void rec_add(sqlite3_file *f, char op, sqlite3_int64 off, int amt)
{
    if (((struct rec_file *)f)->wal && rec_n < LOG_MAX)
        rec_log[rec_n++] = (struct rec_op){op, off, amt};
}

static int r_close(sqlite3_file *f)
{
    return real_of(f)->pMethods->xClose(real_of(f));
}
static int r_read(sqlite3_file *f, void *out, int amt, sqlite3_int64 off)
{
    return real_of(f)->pMethods->xRead(real_of(f), out, amt, off);
}
static int r_write(sqlite3_file *f, const void *data, int amt, sqlite3_int64 off)
{
    rec_add(f, 'w', off, amt);
    return real_of(f)->pMethods->xWrite(real_of(f), data, amt, off);
}
static int r_truncate(sqlite3_file *f, sqlite3_int64 size)
{
    return real_of(f)->pMethods->xTruncate(real_of(f), size);
}
static int r_sync(sqlite3_file *f, int flags)
{
    rec_add(f, 's', 0, 0);
    return real_of(f)->pMethods->xSync(real_of(f), flags);
}
static int r_size(sqlite3_file *f, sqlite3_int64 *out)
{
    return real_of(f)->pMethods->xFileSize(real_of(f), out);
}
static int r_lock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xLock(real_of(f), level);
}
static int r_unlock(sqlite3_file *f, int level)
{
    return real_of(f)->pMethods->xUnlock(real_of(f), level);
}
static int r_check(sqlite3_file *f, int *out)
{
    return real_of(f)->pMethods->xCheckReservedLock(real_of(f), out);
}
static int r_control(sqlite3_file *f, int op, void *arg)
{
    return real_of(f)->pMethods->xFileControl(real_of(f), op, arg);
}
static int r_sector(sqlite3_file *f)
{
    return real_of(f)->pMethods->xSectorSize(real_of(f));
}
static int r_caps(sqlite3_file *f)
{
    return real_of(f)->pMethods->xDeviceCharacteristics(real_of(f));
}
static int r_shm_map(sqlite3_file *f, int page, int size, int extend, void volatile **out)
{
    return real_of(f)->pMethods->xShmMap(real_of(f), page, size, extend, out);
}
static int r_shm_lock(sqlite3_file *f, int off, int n, int flags)
{
    return real_of(f)->pMethods->xShmLock(real_of(f), off, n, flags);
}
static void r_shm_barrier(sqlite3_file *f)
{
    real_of(f)->pMethods->xShmBarrier(real_of(f));
}
static int r_shm_unmap(sqlite3_file *f, int del)
{
    return real_of(f)->pMethods->xShmUnmap(real_of(f), del);
}

static const sqlite3_io_methods rec_methods = {
    2,          r_close,       r_read,      r_write,   r_truncate, r_sync, r_size,
    r_lock,     r_unlock,      r_check,     r_control, r_sector,   r_caps, r_shm_map,
    r_shm_lock, r_shm_barrier, r_shm_unmap, NULL,      NULL,
};

static int r_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *f, int flags, int *out_flags)
{
    struct rec_file *rf = (struct rec_file *)f;
    int rc;

    (void)vfs;
    rf->real = (sqlite3_file *)(rf + 1);
    rf->wal = (flags & SQLITE_OPEN_WAL) != 0;
    rc = rec_root->xOpen(rec_root, name, rf->real, flags, out_flags);
    rf->base.pMethods = rf->real->pMethods ? &rec_methods : NULL;
    return rc;
}

static sqlite3_vfs rec_vfs;

/* The recording VFS as the default, then the store's VFSes over it (once per process). */
static void install(void)
{
    if (rec_root)
        return;
    rec_root = sqlite3_vfs_find(NULL);
    assert_non_null(rec_root);
    rec_vfs = *rec_root;
    rec_vfs.iVersion = 2; /* no xFetch to forward, and none of version 3's */
    rec_vfs.zName = "vh-test-rec";
    rec_vfs.szOsFile = (int)sizeof(struct rec_file) + rec_root->szOsFile;
    rec_vfs.xOpen = r_open;
    rec_vfs.pNext = NULL;
    assert_int_equal(sqlite3_vfs_register(&rec_vfs, 1), SQLITE_OK);
    assert_int_equal(vh__readahead_register(), SQLITE_OK);
    assert_non_null(sqlite3_vfs_find(VH__WAL_BEHIND_VFS));
}

/* ---- helpers --------------------------------------------------------------------------------- */

static int setup(void **state)
{
    rec_n = 0;
    return fixture_new(state, "vh-walbehind");
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char p[320];

    unlink_db(f->path);
    snprintf(p, sizeof(p), "%s/copy.db", f->dir);
    unlink_db(p);
    rmdir(f->dir);
    free(f);
    return 0;
}

/* A connection in WAL mode with synchronous=FULL, through `vfs` (NULL: the default). */
static sqlite3 *open_db(const char *path, const char *vfs)
{
    sqlite3 *db = NULL;

    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs),
                     SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    exec(db, "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL");
    exec(db, "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, body BLOB NOT NULL)");
    return db;
}

/* Writes rows [from, to] of generation `gen` (insert or replace) in one statement each. */
static int write_rows(sqlite3 *db, int from, int to, int gen)
{
    unsigned char body[BODY_SIZE];
    sqlite3_stmt *st = NULL;
    int id, rc = SQLITE_DONE;

    assert_int_equal(
        sqlite3_prepare_v2(db, "INSERT OR REPLACE INTO t (id, body) VALUES (?, ?)", -1, &st, NULL),
        SQLITE_OK);
    for (id = from; id <= to && rc == SQLITE_DONE; id++) {
        body_of(id, gen, body);
        sqlite3_bind_int(st, 1, id);
        sqlite3_bind_blob(st, 2, body, BODY_SIZE, SQLITE_STATIC);
        rc = sqlite3_step(st);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Rows [from, to] are all there, each generation `gen`'s. */
static void check_rows(sqlite3 *db, int from, int to, int gen)
{
    unsigned char want[BODY_SIZE];
    sqlite3_stmt *st = NULL;
    int n = 0, id;

    assert_int_equal(
        sqlite3_prepare_v2(db, "SELECT id, body FROM t WHERE id BETWEEN ? AND ?", -1, &st, NULL),
        SQLITE_OK);
    sqlite3_bind_int(st, 1, from);
    sqlite3_bind_int(st, 2, to);
    while (sqlite3_step(st) == SQLITE_ROW) {
        id = sqlite3_column_int(st, 0);
        body_of(id, gen, want);
        assert_int_equal(sqlite3_column_bytes(st, 1), BODY_SIZE);
        if (memcmp(sqlite3_column_blob(st, 1), want, BODY_SIZE) != 0)
            fail_msg("row %d is not generation %d's", id, gen);
        n++;
    }
    assert_int_equal(sqlite3_finalize(st), SQLITE_OK);
    assert_int_equal(n, to - from + 1);
}

static int64_t count_rows(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int64_t n;

    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* Copies file `from` to `to` byte for byte (a missing `from` makes no `to`). */
static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    FILE *in = fopen(from, "rb"), *out;
    size_t n;

    unlink(to);
    if (!in)
        return;
    out = fopen(to, "wb");
    assert_non_null(out);
    while ((n = fread(buf, 1, sizeof(buf), in)) > 0)
        assert_int_equal(fwrite(buf, 1, n, out), n);
    fclose(in);
    assert_int_equal(fclose(out), 0);
}

/*
 * The database file and its WAL as they are now, copied beside them without the wal-index
 * (as a crash leaves them: the next open recovers from the WAL alone), opened plainly.
 */
static sqlite3 *open_copy(const struct fixture *f)
{
    char from[320], to[320];

    snprintf(to, sizeof(to), "%s/copy.db", f->dir);
    unlink_db(to);
    copy_file(f->path, to);
    snprintf(from, sizeof(from), "%s-wal", f->path);
    snprintf(to, sizeof(to), "%s/copy.db-wal", f->dir);
    copy_file(from, to);
    snprintf(to, sizeof(to), "%s/copy.db", f->dir);
    return open_db(to, NULL);
}

/* The index after the last `op` in the log (0: none). */
static size_t last_op(size_t none, char op)
{
    size_t i;

    for (i = rec_n; i > 0; i--)
        if (rec_log[i - 1].op == op)
            return i;
    return none;
}

/* ---- the tests ------------------------------------------------------------------------------- */

/* 300 rows (about 150 pages) in one commit: 300 frames, a few writes of up to 120 KiB. */
static void test_a_commit_in_few_writes(void **state)
{
    struct fixture *f = *state;
    struct vh__readahead_stats s;
    sqlite3 *wb = NULL, *plain = NULL;
    size_t i, writes = 0, syncs = 0;

    install();
    wb = open_db(f->path, VH__WAL_BEHIND_VFS);
    plain = open_db(f->path, NULL);
    s = stats_of(wb);
    rec_n = 0;
    exec(wb, "BEGIN");
    assert_int_equal(write_rows(wb, 1, 300, 1), SQLITE_OK);
    exec(wb, "COMMIT");
    s.wal_writes = stats_of(wb).wal_writes - s.wal_writes;
    s.wal_runs = stats_of(wb).wal_runs - s.wal_runs;
    for (i = 0; i < rec_n; i++) {
        writes += rec_log[i].op == 'w';
        syncs += rec_log[i].op == 's';
        if (rec_log[i].op == 'w')
            assert_true(rec_log[i].amt <= VH__WAL_BEHIND_MAX);
    }
    /* Two xWrite calls a frame (header, page) came in; the system's VFS saw a handful. */
    assert_true(s.wal_writes >= 2 * 150);
    assert_int_equal(writes, s.wal_runs);
    assert_true(writes * 40 <= s.wal_writes);
    assert_true(syncs >= 1);
    check_rows(plain, 1, 300, 1);
    check_integrity(plain);
    sqlite3_close(plain);
    sqlite3_close(wb);
}

/*
 * 40 commits of 1 to 60 rows, some rewriting earlier rows: each commit's last write to the
 * WAL reaches the system's VFS before its sync, and a copy of the files taken right after
 * each commit holds it.
 */
static void test_each_commit_is_written_before_its_sync(void **state)
{
    struct fixture *f = *state;
    sqlite3 *wb = NULL, *copy;
    int k, from, to, total = 0;

    install();
    wb = open_db(f->path, VH__WAL_BEHIND_VFS);
    exec(wb, "PRAGMA wal_autocheckpoint = 100"); /* the WAL starts over now and then */
    for (k = 0; k < 40; k++) {
        from = k % 3 == 0 && total > 10 ? total - 10 : total + 1;
        to = from + (k * 7) % 60;
        rec_n = 0;
        exec(wb, "BEGIN");
        assert_int_equal(write_rows(wb, from, to, 1), SQLITE_OK);
        exec(wb, "COMMIT");
        if (to > total)
            total = to;
        /* The commit wrote, then synced; nothing of it came after the sync. */
        assert_true(last_op(0, 'w') < last_op(rec_n, 's'));
        copy = open_copy(f);
        assert_int_equal(count_rows(copy), total);
        check_rows(copy, from, to, 1);
        check_integrity(copy);
        sqlite3_close(copy);
    }
    sqlite3_close(wb);
}

/*
 * synchronous=NORMAL commits without a sync: the frames still reach the file before the
 * commit is published (the barrier around the wal-index header), so another connection
 * reads them whole.
 */
static void test_unsynced_commits_are_published_whole(void **state)
{
    struct fixture *f = *state;
    sqlite3 *wb = NULL, *plain = NULL;
    int k, unsynced = 0;

    install();
    wb = open_db(f->path, VH__WAL_BEHIND_VFS);
    plain = open_db(f->path, NULL);
    exec(wb, "PRAGMA synchronous = NORMAL");
    for (k = 0; k < 10; k++) {
        rec_n = 0;
        exec(wb, "BEGIN");
        assert_int_equal(write_rows(wb, 1, 20 + k * 5, k + 1), SQLITE_OK);
        exec(wb, "COMMIT");
        assert_true(rec_n >= 1);
        unsynced += last_op(0, 's') < last_op(0, 'w'); /* no sync after: the barrier wrote */
        check_rows(plain, 1, 20 + k * 5, k + 1);
    }
    assert_true(unsynced >= 8);
    check_integrity(plain);
    sqlite3_close(plain);
    sqlite3_close(wb);
}

/*
 * A transaction that spills frames into its WAL and rolls back leaves a run; another
 * connection then commits frames at the same place in the WAL. The run must not land over
 * them when the first connection next uses its WAL.
 */
static void test_a_rolled_back_run_never_lands_over_a_commit(void **state)
{
    struct fixture *f = *state;
    sqlite3 *a = NULL, *b = NULL, *c;

    install();
    a = open_db(f->path, VH__WAL_BEHIND_VFS);
    b = open_db(f->path, VH__WAL_BEHIND_VFS);
    /* A blob's overflow pages spill into the WAL as they are made, and are not read back. */
    exec(a, "PRAGMA cache_size = 2; PRAGMA cache_spill = 1");
    exec(a, "BEGIN");
    exec(a, "INSERT INTO t (id, body) VALUES (1000, randomblob(400000))");
    assert_true(stats_of(a).wal_writes > 0); /* it did spill */
    exec(a, "ROLLBACK");
    exec(b, "BEGIN");
    assert_int_equal(write_rows(b, 1, 100, 2), SQLITE_OK);
    exec(b, "COMMIT");
    /* `a` reads (its WAL's run, if it still had one, would be written now), then a fresh
     * connection and a copy of the files read b's rows. */
    assert_int_equal(count_rows(a), 100);
    c = open_db(f->path, NULL);
    check_rows(c, 1, 100, 2);
    check_integrity(c);
    sqlite3_close(c);
    c = open_copy(f);
    check_rows(c, 1, 100, 2);
    sqlite3_close(c);
    sqlite3_close(a);
    sqlite3_close(b);
}

/*
 * Limits the size of any file this process writes to the WAL's size now plus `extra` bytes
 * (RLIMIT_FSIZE: a write past it fails with EFBIG, as a full disk would); the limit before
 * goes to `*old`, to be set back with setrlimit.
 */
static void limit_files_to_wal(const struct fixture *f, off_t extra, struct rlimit *old)
{
    struct rlimit lim;
    char wal[320];
    struct stat sb;

    signal(SIGXFSZ, SIG_IGN);
    snprintf(wal, sizeof(wal), "%s-wal", f->path);
    assert_int_equal(stat(wal, &sb), 0);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, old), 0);
    lim = *old;
    lim.rlim_cur = (rlim_t)(sb.st_size + extra);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
}

/*
 * A run that cannot be written (RLIMIT_FSIZE: the kernel's EFBIG, as a full disk would
 * refuse it) fails the commit that wrote it; what was committed before is all there, and
 * the connection commits again once the file may grow.
 */
static void test_a_failed_run_fails_its_commit(void **state)
{
    struct fixture *f = *state;
    struct rlimit old;
    sqlite3 *wb = NULL, *c;
    int rc;

    install();
    wb = open_db(f->path, VH__WAL_BEHIND_VFS);
    exec(wb, "PRAGMA wal_autocheckpoint = 0");
    exec(wb, "BEGIN");
    assert_int_equal(write_rows(wb, 1, 50, 1), SQLITE_OK);
    exec(wb, "COMMIT");
    limit_files_to_wal(f, 8192, &old);
    exec(wb, "BEGIN");
    rc = write_rows(wb, 51, 150, 1);
    if (rc == SQLITE_OK)
        rc = sqlite3_exec(wb, "COMMIT", NULL, NULL, NULL);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_int_not_equal(rc, SQLITE_OK);
    assert_true((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL);
    if (!sqlite3_get_autocommit(wb))
        exec(wb, "ROLLBACK");
    c = open_copy(f);
    assert_int_equal(count_rows(c), 50);
    check_rows(c, 1, 50, 1);
    check_integrity(c);
    sqlite3_close(c);
    /* The same connection commits again. */
    exec(wb, "BEGIN");
    assert_int_equal(write_rows(wb, 51, 80, 3), SQLITE_OK);
    exec(wb, "COMMIT");
    c = open_copy(f);
    assert_int_equal(count_rows(c), 80);
    check_rows(c, 51, 80, 3);
    check_integrity(c);
    sqlite3_close(c);
    sqlite3_close(wb);
}

/*
 * A commit without a sync (synchronous=NORMAL) leaves its run to the barrier, which cannot
 * report a failure: when that write fails (EFBIG, as above), every later write through the
 * connection's WAL fails with it instead of going on after the lost frames.
 */
static void test_a_run_the_barrier_cannot_write_fails_what_follows(void **state)
{
    struct fixture *f = *state;
    struct rlimit old;
    sqlite3 *wb = NULL;
    int rc;

    install();
    wb = open_db(f->path, VH__WAL_BEHIND_VFS);
    exec(wb, "PRAGMA wal_autocheckpoint = 0; PRAGMA synchronous = NORMAL");
    exec(wb, "BEGIN");
    assert_int_equal(write_rows(wb, 1, 10, 1), SQLITE_OK);
    exec(wb, "COMMIT");
    limit_files_to_wal(f, 0, &old); /* not one byte more */
    /* A run well under VH__WAL_BEHIND_MAX: only the barrier writes it, and fails. */
    rec_n = 0;
    exec(wb, "BEGIN");
    assert_int_equal(write_rows(wb, 11, 14, 1), SQLITE_OK);
    (void)sqlite3_exec(wb, "COMMIT", NULL, NULL, NULL);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    assert_true(rec_n >= 1);
    assert_int_equal(rec_log[0].op, 'w'); /* the one write, by the barrier */
    assert_true(last_op(0, 's') == 0);    /* and no sync */
    if (!sqlite3_get_autocommit(wb))
        exec(wb, "ROLLBACK");
    /* The file may grow again, but the WAL's handle does not go on. */
    rc = sqlite3_exec(wb, "BEGIN; INSERT INTO t (id, body) VALUES (100, x'00'); COMMIT", NULL, NULL,
                      NULL);
    assert_true((rc & 0xff) == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL);
    if (!sqlite3_get_autocommit(wb))
        (void)sqlite3_exec(wb, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(wb);
}

/* No memory for a run: the WAL is written through, as the system's VFS would, and leaks none. */
static void test_no_memory_for_the_run(void **state)
{
    struct fixture *f = *state;
    sqlite3 *wb = NULL, *c;
    long live;

    install();
    live = live_blocks;
    wb = open_db(f->path, VH__WAL_BEHIND_VFS);
    alloc_count = 0;
    alloc_fail_at = 1; /* the first allocation through vh_malloc from here: the run */
    exec(wb, "BEGIN");
    assert_int_equal(write_rows(wb, 1, 40, 1), SQLITE_OK);
    exec(wb, "COMMIT");
    alloc_fail_at = 0;
    assert_true(alloc_count >= 1);
    c = open_copy(f);
    check_rows(c, 1, 40, 1);
    sqlite3_close(c);
    sqlite3_close(wb);
    assert_int_equal(live_blocks, live);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_a_commit_in_few_writes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_each_commit_is_written_before_its_sync, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_unsynced_commits_are_published_whole, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_rolled_back_run_never_lands_over_a_commit, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_run_fails_its_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_run_the_barrier_cannot_write_fails_what_follows,
                                        setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_memory_for_the_run, setup, teardown),
    };

    /* Counted from the start (oom.h): memory must not move between allocators. */
    vh_replace_allocator(t_malloc, t_realloc, t_free);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
