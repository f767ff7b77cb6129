/*
 * Console patch: like AWS's Node.js runtime, each console call becomes one
 * line on stdout, "ISO-time\trequestId\tLEVEL\tmessage\n", with newlines
 * inside the message turned into "\r" so a record never spans lines.
 * Writes to a pipe are synchronous on Linux, so lines precede the response.
 */
'use strict';

const util = require('util');

let requestId; // printed as "undefined" outside an invocation, as AWS does

function setRequestId(id) {
  requestId = id;
}

function write(level, args) {
  let line = `${new Date().toISOString()}\t${requestId}\t${level}\t${util.format(...args)}`;
  if (line.indexOf('\n') !== -1) line = line.replace(/\n/g, '\r');
  process.stdout.write(line + '\n');
}

function patchConsole() {
  const levels = {
    log: 'INFO', info: 'INFO', warn: 'WARN', error: 'ERROR',
    debug: 'DEBUG', trace: 'TRACE', fatal: 'FATAL',
  };
  for (const [name, level] of Object.entries(levels)) {
    console[name] = (...args) => write(level, args);
  }
}

module.exports = { patchConsole, setRequestId, write };
