#!/usr/bin/env node
// A webhook sender written the way a Node.js team would write one: a durable SQLite outbox
// (better-sqlite3, WAL, synchronous=FULL), deliveries claimed in batches under a lease,
// each attempt signed at send time (fresh X-Webhook-Timestamp, HMAC-SHA256 over
// `${timestamp}.${body}` with node:crypto) and POSTed with undici over a keep-alive pool,
// every attempt recorded, the results committed in batches (one transaction per batch).
// Retries: immediately, then after 1 s, 2 s, 4 s (4 attempts), 10 s timeout, as in
// SPEC.md §3. It is scenario 7 of bench/run (bench/scenarios/nodesender.sh), the peer that
// vocohook's drain (scenario 1) is compared with.
//
//   node sender.js load  --db FILE --url URL --body FILE --count N [--secret S]
//       creates the outbox and one endpoint, and queues N deliveries of the same body
//       (one event each), in a few large transactions: the backlog, loaded before timing
//   node sender.js run   --db FILE [--exit-when-idle] [--concurrency 8] [--claim-batch 256]
//                        [--commit-batch 256] [--commit-interval-ms 50] [--timeout-ms 10000]
//                        [--node ID]
//       the sender: delivers until stopped (SIGTERM/SIGINT: finishes the attempts in
//       flight, records them, hands back what it claimed, exits); with --exit-when-idle it
//       exits once nothing is pending. Prints a JSON summary on stdout at exit. --node
//       (default: the host name) owns the leases, one running sender per ID; a restart
//       takes back its own claims.
//   node sender.js stats --db FILE
//       the outbox's counts, as JSON (read-only)
//
// Batching: a claim takes up to --claim-batch due rows (state in_flight under a lease) when
// fewer than --concurrency are queued; finished attempts are recorded every
// --commit-interval-ms or --commit-batch attempts, whichever comes first, in the same
// transaction as the next claim when one is due. better-sqlite3 is synchronous, so every
// commit's fsync holds the event loop: fewer, larger commits were faster here (intervals of
// 2, 10, 50 and 100 ms tried; 50 ms and 100 ms about equal, 2 ms the slowest). A delivery
// that succeeded but was not yet recorded when the process dies is sent again after the
// restart: at-least-once, as vocohook.
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const { createHmac, randomBytes, randomUUID } = require('node:crypto');
const { parseArgs } = require('node:util');
const Database = require('better-sqlite3');
const { Agent } = require('undici');

const USER_AGENT = 'node-sender/1.0';
const RETRY_SCHEDULE_MS = [0, 1000, 2000, 4000]; // delay before attempt 1, 2, 3, 4
const RESPONSE_HEAD_BYTES = 256;

const SCHEMA = `
CREATE TABLE IF NOT EXISTS endpoints (
    id                   TEXT NOT NULL PRIMARY KEY,
    url                  TEXT NOT NULL,
    secret               TEXT NOT NULL,
    enabled              INTEGER NOT NULL DEFAULT 1,
    last_delivery_ms     INTEGER,
    last_delivery_status TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS events (
    id          TEXT NOT NULL PRIMARY KEY,
    body        BLOB NOT NULL,
    accepted_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE IF NOT EXISTS deliveries (
    id              TEXT NOT NULL PRIMARY KEY,
    event_id        TEXT NOT NULL REFERENCES events(id),
    endpoint_id     TEXT NOT NULL REFERENCES endpoints(id),
    state           TEXT NOT NULL CHECK (state IN
                        ('pending', 'in_flight', 'succeeded', 'abandoned', 'canceled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    created_ms      INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  INTEGER
) STRICT;
-- Claims: due pending rows in order, never a scan.
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt_ms);
-- Delivery history per endpoint, filtered by state, newest first (what a dashboard or a
-- "GET …/deliveries?state=" asks for; vocohook keeps the same index), and per event.
CREATE INDEX IF NOT EXISTS deliveries_endpoint ON deliveries(endpoint_id, state, created_ms);
CREATE INDEX IF NOT EXISTS deliveries_event ON deliveries(event_id);
CREATE TABLE IF NOT EXISTS attempts (
    delivery_id   TEXT NOT NULL REFERENCES deliveries(id),
    n             INTEGER NOT NULL,
    started_ms    INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    http_status   INTEGER,
    error         TEXT,
    response_head BLOB,
    PRIMARY KEY (delivery_id, n)
) STRICT;
`;

function openDb(file, { readonly = false } = {}) {
    const db = new Database(file, { readonly, fileMustExist: readonly });
    if (!readonly) {
        db.pragma('journal_mode = WAL');
        db.pragma('synchronous = FULL'); // every commit is fsynced, as vocohook's store
        db.pragma('foreign_keys = ON');
        db.pragma('busy_timeout = 5000');
        db.exec(SCHEMA);
    }
    return db;
}

function die(msg) {
    process.stderr.write(`node-sender: ${msg}\n`);
    process.exit(1);
}

function intOption(values, name, dflt) {
    if (values[name] === undefined) return dflt;
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 0) die(`--${name}: not a non-negative integer: ${values[name]}`);
    return n;
}

// --- load -----------------------------------------------------------------------------------

function cmdLoad(values) {
    for (const k of ['db', 'url', 'body', 'count']) if (!values[k]) die(`load: --${k} is required`);
    const count = intOption(values, 'count', 0);
    const body = fs.readFileSync(values.body);
    new URL(values.url); // throws on a bad URL
    const secret = values.secret || `whsec_${randomBytes(24).toString('base64url')}`;
    const db = openDb(values.db);
    const now = Date.now();
    const endpointId = randomUUID();
    db.prepare('INSERT INTO endpoints (id, url, secret) VALUES (?, ?, ?)')
        .run(endpointId, values.url, secret);
    const insEvent = db.prepare('INSERT INTO events (id, body, accepted_ms) VALUES (?, ?, ?)');
    const insDelivery = db.prepare(
        `INSERT INTO deliveries (id, event_id, endpoint_id, state, next_attempt_ms, created_ms,
                                 updated_ms)
         VALUES (?, ?, ?, 'pending', ?, ?, ?)`);
    const chunk = db.transaction((n) => {
        for (let i = 0; i < n; i++) {
            const eventId = randomUUID();
            insEvent.run(eventId, body, now);
            insDelivery.run(randomUUID(), eventId, endpointId, now, now, now);
        }
    });
    for (let left = count; left > 0; left -= 10000) chunk(Math.min(left, 10000));
    db.close();
    process.stdout.write(JSON.stringify({ endpoint_id: endpointId, deliveries: count }) + '\n');
}

// --- stats ----------------------------------------------------------------------------------

function cmdStats(values) {
    if (!values.db) die('stats: --db is required');
    const db = openDb(values.db, { readonly: true });
    const states = {};
    for (const r of db.prepare('SELECT state, count(*) AS n FROM deliveries GROUP BY state').all()) {
        states[r.state] = r.n;
    }
    const d = db.prepare(
        `SELECT count(*) AS total, max(CASE WHEN state = 'succeeded' THEN updated_ms END) AS last_ms
         FROM deliveries`).get();
    const a = db.prepare(
        `SELECT count(*) AS attempts, min(started_ms) AS first_ms,
                coalesce(sum(http_status IS NULL OR http_status / 100 != 2), 0) AS failed
         FROM attempts`).get();
    db.close();
    process.stdout.write(JSON.stringify({
        deliveries: d.total, states, attempts: a.attempts, failed_attempts: a.failed,
        first_attempt_ms: a.first_ms, last_succeeded_ms: d.last_ms,
    }) + '\n');
}

// --- run ------------------------------------------------------------------------------------

function errorClass(err) {
    switch (err && err.code) {
    case 'UND_ERR_CONNECT_TIMEOUT':
    case 'UND_ERR_HEADERS_TIMEOUT':
    case 'UND_ERR_BODY_TIMEOUT':
        return 'timeout';
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
        return 'dns';
    case 'ECONNREFUSED':
    case 'ECONNRESET':
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
        return 'connect';
    default:
        return err && typeof err.code === 'string' && err.code.startsWith('ERR_TLS') ? 'tls' : 'protocol';
    }
}

class Sender {
    constructor(db, opts) {
        this.db = db;
        this.opts = opts;
        this.node = opts.node;
        this.leaseMs = Math.max(600000, 2 * opts.timeoutMs);
        // One keep-alive pool per origin, at most `concurrency` connections each (vocohook's
        // per-endpoint limit is 8).
        this.agent = new Agent({
            connections: opts.concurrency,
            pipelining: 1,
            keepAliveTimeout: 60000,
            headersTimeout: opts.timeoutMs,
            bodyTimeout: opts.timeoutMs,
            connect: { timeout: opts.timeoutMs },
        });
        this.endpoints = new Map();
        this.queue = []; // claimed, not started
        this.done = []; // finished attempts, not yet committed
        this.inFlight = 0;
        this.exhausted = false; // the last claim found fewer due rows than it asked for
        this.stopping = false;
        this.flushTimer = null;
        this.wakeTimer = null;
        this.stats = { attempts: 0, succeeded: 0, retried: 0, abandoned: 0, commits: 0, claims: 0 };
        this.prepare();
    }

    prepare() {
        const db = this.db;
        this.sEndpoints = db.prepare('SELECT id, url, secret FROM endpoints WHERE enabled = 1');
        this.sDue = db.prepare(
            `SELECT d.id, d.event_id, d.endpoint_id, d.attempts, e.body
             FROM deliveries d JOIN events e ON e.id = d.event_id
             WHERE d.state = 'pending' AND d.next_attempt_ms <= ?
             ORDER BY d.next_attempt_ms LIMIT ?`);
        this.sLease = db.prepare(
            `UPDATE deliveries SET state = 'in_flight', lease_owner = ?, lease_until_ms = ?,
                                   updated_ms = ?
             WHERE id = ? AND state = 'pending'`);
        this.sNextDue = db.prepare(
            "SELECT min(next_attempt_ms) AS t FROM deliveries WHERE state = 'pending'");
        this.sAttempt = db.prepare(
            `INSERT INTO attempts (delivery_id, n, started_ms, duration_ms, http_status, error,
                                   response_head)
             VALUES (?, ?, ?, ?, ?, ?, ?)`);
        this.sFinish = db.prepare(
            `UPDATE deliveries SET state = ?, attempts = ?, next_attempt_ms = ?, updated_ms = ?,
                                   lease_owner = NULL, lease_until_ms = NULL
             WHERE id = ? AND state = 'in_flight' AND lease_owner = ?`);
        this.sEndpointLast = db.prepare(
            'UPDATE endpoints SET last_delivery_ms = ?, last_delivery_status = ? WHERE id = ?');
        this.sRecover = db.prepare(
            `UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until_ms = NULL,
                                   updated_ms = ?
             WHERE state = 'in_flight' AND (lease_owner = ? OR lease_until_ms < ?)`);
        this.sRelease = db.prepare(
            `UPDATE deliveries SET state = 'pending', lease_owner = NULL, lease_until_ms = NULL,
                                   updated_ms = ?
             WHERE id = ? AND state = 'in_flight' AND lease_owner = ?`);

        // Records the finished attempts and, when asked, claims the next batch: one
        // transaction, one fsync.
        this.txCommit = db.transaction((results, claimMax) => {
            const now = Date.now();
            const last = new Map();
            for (const r of results) {
                this.sAttempt.run(r.job.id, r.n, r.startedMs, r.durationMs, r.status, r.error, r.head);
                this.sFinish.run(r.state, r.n, r.nextMs, now, r.job.id, this.node);
                last.set(r.job.endpointId, r);
            }
            for (const [endpointId, r] of last) {
                this.sEndpointLast.run(r.startedMs, r.state === 'succeeded' ? 'succeeded' : 'failed',
                    endpointId);
            }
            if (!claimMax) return [];
            const rows = this.sDue.all(now, claimMax);
            const until = now + this.leaseMs;
            for (const row of rows) this.sLease.run(this.node, until, now, row.id);
            return rows;
        });
    }

    loadEndpoints() {
        this.endpoints.clear();
        for (const e of this.sEndpoints.all()) {
            const u = new URL(e.url);
            this.endpoints.set(e.id, {
                id: e.id, origin: u.origin, path: u.pathname + u.search, secret: e.secret,
            });
        }
    }

    start() {
        const now = Date.now();
        const back = this.sRecover.run(now, this.node, now).changes;
        if (back) process.stderr.write(`node-sender: took back ${back} deliveries in flight\n`);
        this.loadEndpoints();
        this.finished = new Promise((resolve) => { this.resolveFinished = resolve; });
        this.pump();
        return this.finished;
    }

    // Commits what is finished; with `claim`, tops the queue up in the same transaction.
    commit(claim) {
        if (this.flushTimer) {
            clearTimeout(this.flushTimer);
            this.flushTimer = null;
        }
        const results = this.done;
        const claimMax = claim ? this.opts.claimBatch : 0;
        if (results.length === 0 && claimMax === 0) return;
        this.done = [];
        const rows = this.txCommit.immediate(results, claimMax);
        this.stats.commits++;
        if (claimMax) {
            this.stats.claims++;
            this.exhausted = rows.length < claimMax;
            for (const row of rows) {
                let ep = this.endpoints.get(row.endpoint_id);
                if (!ep) {
                    this.loadEndpoints();
                    ep = this.endpoints.get(row.endpoint_id);
                }
                if (!ep) continue; // disabled meanwhile: its lease runs out, recovery puts it back
                this.queue.push({
                    id: row.id, eventId: row.event_id, endpointId: row.endpoint_id,
                    attempts: row.attempts, body: row.body, endpoint: ep,
                });
            }
        }
    }

    // Starts attempts up to the concurrency limit, claiming more when the queue runs low.
    pump() {
        if (!this.stopping && !this.exhausted && this.queue.length < this.opts.concurrency) {
            this.commit(true);
        }
        while (this.inFlight < this.opts.concurrency && this.queue.length > 0) {
            const job = this.queue.shift();
            this.inFlight++;
            this.attempt(job).then((r) => this.onDone(r));
        }
        if (this.inFlight === 0 && this.queue.length === 0) this.idle();
    }

    onDone(r) {
        this.inFlight--;
        this.done.push(r);
        this.stats.attempts++;
        this.stats[r.state === 'succeeded' ? 'succeeded' : r.state === 'pending' ? 'retried' : 'abandoned']++;
        if (r.state === 'pending') this.exhausted = false; // a retry will come due
        if (this.done.length >= this.opts.commitBatch) {
            this.commit(false);
        } else if (!this.flushTimer) {
            this.flushTimer = setTimeout(() => {
                this.flushTimer = null;
                this.commit(false);
            }, this.opts.commitIntervalMs);
        }
        this.pump();
    }

    // Nothing queued, nothing in flight: record the rest, then sleep until the next due row.
    idle() {
        this.commit(false);
        if (this.stopping) return this.finish();
        const next = this.sNextDue.get().t;
        if (next === null && this.opts.exitWhenIdle) return this.finish();
        const wait = next === null ? this.opts.pollMs
            : Math.min(this.opts.pollMs, Math.max(0, next - Date.now()));
        if (!this.wakeTimer) {
            this.wakeTimer = setTimeout(() => {
                this.wakeTimer = null;
                this.exhausted = false;
                this.pump();
            }, wait);
        }
    }

    stop() {
        if (this.stopping) return;
        this.stopping = true;
        if (this.wakeTimer) {
            clearTimeout(this.wakeTimer);
            this.wakeTimer = null;
        }
        // Hand back what was claimed but not started; the attempts in flight finish.
        const now = Date.now();
        const queued = this.queue;
        this.queue = [];
        this.db.transaction(() => {
            for (const job of queued) this.sRelease.run(now, job.id, this.node);
        })();
        if (this.inFlight === 0) this.idle();
    }

    finish() {
        if (this.finishing) return;
        this.finishing = true;
        this.agent.close().then(() => this.resolveFinished(this.stats));
    }

    async attempt(job) {
        const ep = job.endpoint;
        const n = job.attempts + 1;
        const timestamp = new Date().toISOString(); // 2026-03-15T14:32:08.000Z
        const signature = 'sha256=' + createHmac('sha256', ep.secret)
            .update(`${timestamp}.`).update(job.body).digest('hex');
        const startedMs = Date.now();
        const t0 = performance.now();
        let status = null;
        let error = null;
        let head = null;
        try {
            const res = await this.agent.request({
                origin: ep.origin,
                path: ep.path,
                method: 'POST',
                headers: {
                    'content-type': 'application/json',
                    'user-agent': USER_AGENT,
                    'x-webhook-id': job.eventId,
                    'x-webhook-timestamp': timestamp,
                    'x-webhook-signature': signature,
                },
                body: job.body,
            });
            status = res.statusCode;
            const chunks = [];
            let size = 0;
            for await (const chunk of res.body) {
                if (size < RESPONSE_HEAD_BYTES) {
                    chunks.push(chunk.subarray(0, RESPONSE_HEAD_BYTES - size));
                    size += Math.min(chunk.length, RESPONSE_HEAD_BYTES - size);
                }
            }
            head = size ? Buffer.concat(chunks) : null;
        } catch (err) {
            error = errorClass(err) + (err && err.message ? `: ${err.message}` : '');
        }
        const durationMs = Math.round(performance.now() - t0);
        let state;
        let nextMs = 0;
        if (status !== null && status >= 200 && status < 300) {
            state = 'succeeded';
        } else if (n < RETRY_SCHEDULE_MS.length) {
            state = 'pending';
            nextMs = Date.now() + RETRY_SCHEDULE_MS[n];
        } else {
            state = 'abandoned';
        }
        return { job, n, startedMs, durationMs, status, error, head, state, nextMs };
    }
}

async function cmdRun(values) {
    if (!values.db) die('run: --db is required');
    const opts = {
        concurrency: intOption(values, 'concurrency', 8),
        claimBatch: intOption(values, 'claim-batch', 256),
        commitBatch: intOption(values, 'commit-batch', 256),
        commitIntervalMs: intOption(values, 'commit-interval-ms', 50),
        timeoutMs: intOption(values, 'timeout-ms', 10000),
        pollMs: intOption(values, 'poll-ms', 1000),
        exitWhenIdle: Boolean(values['exit-when-idle']),
        node: values.node || os.hostname(),
    };
    if (opts.concurrency < 1 || opts.claimBatch < 1 || opts.commitBatch < 1) {
        die('run: --concurrency, --claim-batch and --commit-batch must be at least 1');
    }
    const t0 = Date.now();
    const db = openDb(values.db);
    const sender = new Sender(db, opts);
    for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => sender.stop());
    const stats = await sender.start();
    const cpu = process.cpuUsage();
    process.stdout.write(JSON.stringify({
        ...stats, elapsed_ms: Date.now() - t0, cpu_user_ms: Math.round(cpu.user / 1000),
        cpu_system_ms: Math.round(cpu.system / 1000), node: process.version,
        sqlite: db.prepare('SELECT sqlite_version() AS v').get().v, options: opts,
    }) + '\n');
    db.close();
}

function main() {
    const { values, positionals } = parseArgs({
        allowPositionals: true,
        options: {
            db: { type: 'string' },
            url: { type: 'string' },
            body: { type: 'string' },
            count: { type: 'string' },
            secret: { type: 'string' },
            concurrency: { type: 'string' },
            'claim-batch': { type: 'string' },
            'commit-batch': { type: 'string' },
            'commit-interval-ms': { type: 'string' },
            'timeout-ms': { type: 'string' },
            'poll-ms': { type: 'string' },
            'exit-when-idle': { type: 'boolean' },
            node: { type: 'string' },
        },
    });
    switch (positionals[0]) {
    case 'load': return cmdLoad(values);
    case 'run': return cmdRun(values);
    case 'stats': return cmdStats(values);
    default: die('usage: sender.js load|run|stats --db FILE … (see the comment at the top)');
    }
}

Promise.resolve().then(main).catch((err) => die(err && err.stack ? err.stack : String(err)));
