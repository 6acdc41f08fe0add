/*
 * Private to src/store/ and src/receive/: SQLite VFSes over the system's ("unix") that
 * read the main database file ahead and write the WAL behind (docs/decisions.md, "SQLite:
 * reading the database file ahead" and "SQLite: the WAL written behind").
 *
 * Reading ahead (VH__READAHEAD_VFS only). SQLite reads its database file one page at a
 * time, one pread(2) per page. A drain reads the outbox's bodies and rows in file order
 * (they were written in the order they are sent), so nearly every read is the page after
 * the last one: a read that goes on from where the last one ended fills a window of
 * READAHEAD_BYTES with one pread, and the pages after it are copied from there. Other
 * reads, and every file but the main database (the WAL, journals), go straight to the
 * system's VFS.
 *
 * What keeps the window true. The window lives only between two of SQLite's lock calls on
 * the file: every read transaction in WAL mode takes and drops a read lock of the
 * wal-index (xShmLock), and a rollback-mode one locks the file itself (xLock), so the
 * window never outlives the transaction it was filled in. Within one read transaction
 * SQLite itself guarantees that a page it reads from the database file does not change
 * (a checkpoint copies to the file only frames every reader's snapshot reads from the
 * WAL, and waits for readers that read the file alone), so a page read ahead is the page
 * SQLite would have read. Any write, truncation or file control through the handle drops
 * the window too. A read past the end of the file is never served from the window: a fill
 * that comes back short is thrown away and the page read by itself.
 *
 * Writing the WAL behind (both VFSes). SQLite writes each WAL frame with two pwrite(2)s,
 * its 24-byte header and its page, and a commit of N pages makes 2N of them before its
 * sync. A WAL file's handle instead copies writes that go on from the last one into a
 * buffer (up to VH__WAL_BEHIND_MAX bytes) and writes the run with one pwrite when SQLite
 * next does anything else with the file: syncs it, reads it, asks its size, truncates or
 * closes it, or passes it a file control; before SQLite publishes a commit to other
 * connections (the wal-index header, which is written around an xShmBarrier of the main
 * database file: the barrier writes the run of that connection's WAL first); and at every
 * wal-index lock call of the main database file (xShmLock), so that a run a rolled-back
 * transaction left is in the file before its connection gives up the write lock, never
 * after another connection's frames at the same place. So every other connection, and a
 * checkpoint, reads only frames that are in the file, and a commit is on disk when its
 * sync returns, as before (synchronous=FULL syncs the WAL before publishing). A write the
 * run cannot take (elsewhere in the file, or too large) writes the run first and then
 * goes through as it came, so the file always holds SQLite's writes in SQLite's order. A
 * run that fails to be written fails the call that wrote it (the sync of a commit fails
 * the commit); one written by a barrier or a lock call, which cannot report it, fails
 * every later call on the WAL's handle instead.
 */
#ifndef VH_STORE_READAHEAD_INT_H
#define VH_STORE_READAHEAD_INT_H

#include <stdint.h>

/* The VFSes' names, for sqlite3_open_v2; neither is ever the default VFS. */
#define VH__READAHEAD_VFS  "vh-readahead" /* reads ahead and writes the WAL behind (the store) */
#define VH__WAL_BEHIND_VFS "vh-walbehind" /* writes the WAL behind only (the inbox) */

/*
 * The most a WAL handle holds before it writes; a commit of more writes in several runs.
 * Below 128 KiB: the system's VFS writes at most 128 KiB - 1 bytes a pwrite(2) (it masks
 * the count to 17 bits), and fails a write of exactly 128 KiB as a full disk.
 */
#define VH__WAL_BEHIND_MAX (120 * 1024)

/* How much one read ahead fills: one pread(2) in place of up to 16 of 4 KiB pages. */
#define VH__READAHEAD_BYTES (64 * 1024)

/*
 * sqlite3_file_control(db, "main", VH__READAHEAD_FCNTL_STATS, &stats) fills a struct
 * vh__readahead_stats with the counts of the connection's database file so far (for tests
 * and benchmarks). SQLite's own opcodes are below 100.
 */
#define VH__READAHEAD_FCNTL_STATS 0x7668

struct vh__readahead_stats {
    uint64_t reads;  /* xRead calls on the main database file */
    uint64_t hits;   /* served from the window, no system call */
    uint64_t fills;  /* reads that filled the window (one pread of up to a window) */
    uint64_t direct; /* reads passed to the system's VFS as they came */
    uint64_t failed; /* fills that did not come back whole (the file shrank): thrown away */
    /* The connection's WAL, while it is open (counted from its open): */
    uint64_t wal_writes; /* xWrite calls on the WAL */
    uint64_t wal_runs;   /* pwrite(2)s that wrote them */
};

/*
 * Registers both VFSes (once per process; thread-safe). Returns SQLITE_OK, or SQLite's code
 * when there is no default VFS to wrap or registration failed.
 */
int vh__readahead_register(void);

#endif
