#!/usr/bin/env node
// A throw-away S3-compatible server for the integration tests: s3rver on 127.0.0.1 over a
// fresh temporary directory, with the given buckets, its own logging silenced.
//
//   node serve.js [--port N] [--bucket NAME]...    (port 0, the default, picks one)
//
// stdout: `listening on 127.0.0.1:PORT` once ready, then one line per answered request,
//   `request METHOD URL STATUS`, so that a test can count what reached the server.
// SIGTERM or SIGINT: closes the server, removes the directory, exits 0.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const S3rver = require('s3rver');

function parseArgs(argv) {
  const opts = { port: 0, buckets: [] };
  for (let i = 0; i < argv.length; i++) {
    const value = argv[i + 1];
    if (argv[i] === '--port' && value !== undefined) {
      opts.port = Number(value);
      i++;
    } else if (argv[i] === '--bucket' && value !== undefined) {
      opts.buckets.push(value);
      i++;
    } else {
      process.stderr.write(`usage: node serve.js [--port N] [--bucket NAME]...\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) {
    process.stderr.write(`serve.js: bad port\n`);
    process.exit(2);
  }
  return opts;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const directory = fs.mkdtempSync(path.join(os.tmpdir(), 'vh-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: opts.port,
    directory,
    silent: true,
    configureBuckets: opts.buckets.map(name => ({ name })),
  });
  let stopping = false;
  const cleanup = () => fs.rmSync(directory, { recursive: true, force: true });
  const stop = () => {
    if (stopping) return;
    stopping = true;
    if (!server.httpServer) {
      // not listening yet
      cleanup();
      process.exit(0);
    }
    server.close(() => {
      cleanup();
      process.exit(0);
    });
    // keep-alive connections would hold close() open: end them
    if (server.httpServer.closeAllConnections) server.httpServer.closeAllConnections();
  };

  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  let address;
  try {
    address = await server.run();
  } catch (err) {
    cleanup();
    throw err;
  }
  server.httpServer.on('request', (req, res) => {
    res.on('finish', () => {
      process.stdout.write(`request ${req.method} ${req.url} ${res.statusCode}\n`);
    });
  });
  process.stdout.write(`listening on ${address.address}:${address.port}\n`);
}

main().catch(err => {
  process.stderr.write(`serve.js: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
