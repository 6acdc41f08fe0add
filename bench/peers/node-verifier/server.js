'use strict';
// A session.completed webhook receiver written the usual Node.js way: the raw body,
// crypto.createHmac over `${timestamp}.${rawBody}`, crypto.timingSafeEqual, a timestamp
// window, dedupe on session_id, and each accepted webhook appended to a JSON-lines file and
// fdatasync'ed before its 200. Scenario 6 of bench/run measures it next to `vocohook
// receive` (see README.md beside this file for what it does and does not do).
//
//   WEBHOOK_SECRETS=s1[,s2] WEBHOOK_STORE=inbox.jsonl node server.js [PORT]
//
// Environment: WEBHOOK_SECRETS (required, comma-separated, for rotation), WEBHOOK_STORE
// (required, the JSON-lines file), WEBHOOK_TOLERANCE_SEC (default 300), HOST (127.0.0.1).
// PORT 0 (the default) picks a free port. Prints `listening on HOST:PORT` once bound;
// SIGTERM or SIGINT: stop accepting, commit what is queued, exit 0.
// Answers (the same shapes as `vocohook receive`):
//   200 {"ok":true,"session_id":"…","duplicate":false|true}    stored now, or already stored
//   401 {"ok":false,"error":"unauthorized","reason":"…"}       the signature or time check failed
//   400 invalid_payload, 413 payload_too_large, 404, 405, 500 internal_error (store failed)

const http = require('node:http');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { isUtf8 } = require('node:buffer');

const MAX_BODY = 1024 * 1024;
const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const SIGNATURE = /^sha256=[0-9a-f]{64}$/;
const ID = /^[A-Za-z0-9_-]{1,64}$/;

const secrets = (process.env.WEBHOOK_SECRETS || '').split(',').filter((s) => s !== '');
const storePath = process.env.WEBHOOK_STORE;
const toleranceMs = Number(process.env.WEBHOOK_TOLERANCE_SEC || 300) * 1000;
const host = process.env.HOST || '127.0.0.1';
const port = Number(process.argv[2] || 0);
if (secrets.length === 0 || !storePath || !(toleranceMs >= 0)) {
  console.error('usage: WEBHOOK_SECRETS=s1[,s2] WEBHOOK_STORE=FILE node server.js [PORT]');
  process.exit(2);
}

// --- verification -------------------------------------------------------------------------

// null when the request is authentic and in time, else the reason (vocohook's names).
function verify(timestamp, signature, rawBody, nowMs) {
  if (typeof timestamp !== 'string' || !TIMESTAMP.test(timestamp)) return 'bad_timestamp';
  if (typeof signature !== 'string' || !SIGNATURE.test(signature)) return 'bad_signature';
  const t = Date.parse(timestamp);
  if (Number.isNaN(t)) return 'bad_timestamp';
  if (nowMs - t > toleranceMs) return 'too_old';
  if (t - nowMs > toleranceMs) return 'too_new';
  const received = Buffer.from(signature);
  let match = false;
  for (const secret of secrets) {
    // `${timestamp}.${rawBody}`, fed as bytes: a Buffer in a template literal would be
    // decoded and re-encoded, and that is not byte-exact for every body.
    const expected = 'sha256=' + crypto.createHmac('sha256', secret)
      .update(`${timestamp}.`).update(rawBody).digest('hex');
    // Every secret is tried: the time taken does not say which one matched.
    if (crypto.timingSafeEqual(received, Buffer.from(expected))) match = true;
  }
  return match ? null : 'mismatch';
}

// The session_id of a webhook body, or null when the body is not a session.completed event.
function sessionId(rawBody) {
  if (!isUtf8(rawBody)) return null;
  let ev;
  try {
    ev = JSON.parse(rawBody.toString('utf8'));
  } catch {
    return null;
  }
  if (!ev || ev.event !== 'session.completed' || !ev.data || typeof ev.data !== 'object') {
    return null;
  }
  const sid = ev.data.session_id;
  return typeof sid === 'string' && ID.test(sid) ? sid : null;
}

// --- the store: JSON lines, group commit --------------------------------------------------
//
// One line per accepted webhook: {"session_id","received_at","timestamp","signature",
// "webhook_id","body"} (body: the raw body, valid UTF-8, as a string). Requests that arrive
// while a commit is in progress wait for the next one, which writes them all with one
// write and one fdatasync: one sync per batch, as vocohook's SQLite group commit.

const dirFd = fs.openSync(path.dirname(path.resolve(storePath)), 'r');
const fd = fs.openSync(storePath, 'a', 0o600);
fs.fsyncSync(dirFd); // the file's directory entry is durable before the first 200
fs.closeSync(dirFd);

const stored = new Set(); // session_ids committed (rebuilt from the file at start)
const pending = new Set(); // session_ids queued or being committed
for (const line of fs.readFileSync(storePath, 'utf8').split('\n')) {
  if (line === '') continue;
  try {
    stored.add(JSON.parse(line).session_id);
  } catch {
    // A torn last line (a crash during a write): it was never acknowledged.
  }
}

let queue = []; // {sid, line, res} or {sid, dup: true, res}
let committing = false;

function send(res, status, obj) {
  const body = JSON.stringify(obj);
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(body),
  });
  res.end(body);
}

function writeAll(buf, off, done) {
  fs.write(fd, buf, off, buf.length - off, null, (err, n) => {
    if (err) return done(err);
    if (off + n < buf.length) return writeAll(buf, off + n, done);
    return done(null);
  });
}

function commit() {
  if (committing || queue.length === 0) return;
  committing = true;
  const batch = queue;
  queue = [];
  const lines = batch.filter((x) => !x.dup).map((x) => x.line);
  const finish = (err) => {
    for (const x of batch) {
      if (!x.dup) {
        pending.delete(x.sid);
        if (!err) stored.add(x.sid);
      }
    }
    for (const x of batch) {
      if (stored.has(x.sid)) {
        send(x.res, 200, { ok: true, session_id: x.sid, duplicate: Boolean(x.dup) });
      } else {
        send(x.res, 500, { ok: false, error: 'internal_error', message: 'store failed' });
      }
    }
    if (err) console.error(JSON.stringify({ msg: 'store failed', error: String(err) }));
    committing = false;
    commit();
  };
  if (lines.length === 0) return finish(null);
  return writeAll(Buffer.from(lines.join('')), 0, (err) => {
    if (err) return finish(err);
    return fs.fdatasync(fd, finish);
  });
}

function accept(req, res, rawBody) {
  const timestamp = req.headers['x-webhook-timestamp'];
  const signature = req.headers['x-webhook-signature'];
  const reason = verify(timestamp, signature, rawBody, Date.now());
  if (reason !== null) {
    return send(res, 401, { ok: false, error: 'unauthorized', reason });
  }
  const sid = sessionId(rawBody);
  if (sid === null) {
    return send(res, 400, { ok: false, error: 'invalid_payload',
      message: 'not a session.completed event with a valid data.session_id' });
  }
  if (stored.has(sid)) {
    return send(res, 200, { ok: true, session_id: sid, duplicate: true });
  }
  if (pending.has(sid)) {
    queue.push({ sid, dup: true, res }); // answered once the first copy is committed
  } else {
    pending.add(sid);
    const webhookId = req.headers['x-webhook-id'];
    queue.push({
      sid,
      res,
      line: JSON.stringify({
        session_id: sid,
        received_at: new Date().toISOString(),
        timestamp,
        signature,
        webhook_id: typeof webhookId === 'string' ? webhookId : null,
        body: rawBody.toString('utf8'),
      }) + '\n',
    });
  }
  return commit();
}

// --- HTTP -------------------------------------------------------------------------------------

const server = http.createServer((req, res) => {
  const url = req.url.split('?', 1)[0];
  if (url !== '/' && url !== '/webhook') {
    req.resume();
    return send(res, 404, { ok: false, error: 'not_found' });
  }
  if (req.method !== 'POST') {
    req.resume();
    return send(res, 405, { ok: false, error: 'method_not_allowed' });
  }
  const chunks = [];
  let size = 0;
  let tooBig = false;
  req.on('data', (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY) tooBig = true;
    else chunks.push(chunk);
  });
  req.on('end', () => {
    if (tooBig) return send(res, 413, { ok: false, error: 'payload_too_large' });
    return accept(req, res, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks));
  });
  return undefined;
});

server.listen(port, host, () => {
  const a = server.address();
  process.stdout.write(`listening on ${a.address}:${a.port}\n`);
});

function stop() {
  server.close();
  server.closeIdleConnections();
  const wait = () => {
    if (committing || queue.length > 0) return setTimeout(wait, 5);
    fs.closeSync(fd);
    return process.exit(0);
  };
  wait();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
