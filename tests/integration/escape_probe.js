// The escape suite's attempts from a Node.js function (see escape_probe.py):
// the file system, procfs, sysctls and TCP from Node itself; the syscalls
// Node has no binding for through `python3 probe.py --syscalls`.
const fs = require('fs');
const net = require('net');
const path = require('path');
const { execFileSync } = require('child_process');

const SYSCTLS = {
  '/proc/sys/kernel/core_pattern': '|/var/task/evil %p',
  '/proc/sys/kernel/modprobe': '/var/task/evil',
  '/proc/sys/kernel/hostname': 'escaped',
  '/proc/sys/kernel/shmmax': '1024',
  '/proc/sys/kernel/msgmax': '1024',
  '/proc/sys/kernel/pid_max': '4096',
  '/proc/sys/vm/overcommit_memory': '2',
  '/proc/sys/net/ipv4/ip_forward': '1',
  '/proc/sys/fs/mqueue/queues_max': '1',
  '/proc/sysrq-trigger': 'h',
};
const HOST_PATHS = ['/etc/shadow', '/etc/passwd-', '/root', '/home', '/sys', '/boot', '/var/lib',
                    '/run/realm', '/proc/1/root/etc/shadow'];
const RO_PATHS = ['/escape', '/usr/escape', '/etc/escape', '/var/task/escape', '/opt/escape',
                  '/var/escape', '/var/lang/escape', '/var/lang/bin/escape', '/dev/escape', '/proc/escape'];

function procWritable() {
  const found = [];
  const walk = (dir, top) => {
    let entries;
    try { entries = fs.readdirSync(dir, { withFileTypes: true }); } catch { return; }
    for (const e of entries) {
      const p = path.join(dir, e.name);
      if (top && (/^\d+$/.test(e.name) || e.name === 'self' || e.name === 'thread-self')) continue;
      if (e.isDirectory()) walk(p, false);
      else if (e.isFile()) {
        try {
          const fd = fs.openSync(p, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK |
                                    fs.constants.O_NOCTTY);
          fs.closeSync(fd);
          found.push(p);
        } catch { /* refused: as it should be */ }
      }
    }
  };
  walk('/proc', true);
  return found;
}

function tryWrite(p, value) {
  try { fs.writeFileSync(p, value); return 'ok'; } catch (e) { return e.code || String(e); }
}

function connect(host, port, ms) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    s.setTimeout(ms, () => { s.destroy(); resolve('timeout'); });
    s.on('connect', () => { s.destroy(); resolve('connected'); });
    s.on('error', (e) => resolve(e.code || String(e)));
  });
}

function listening() {
  const ports = new Set();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const parts = line.trim().split(/\s+/);
      if (parts.length > 3 && parts[3] === '0A') ports.add(parseInt(parts[1].split(':').pop(), 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

function status() {
  const out = {};
  for (const line of fs.readFileSync('/proc/self/status', 'utf8').split('\n')) {
    const [k, v] = line.split(':');
    if (['Uid', 'Gid', 'CapInh', 'CapPrm', 'CapEff', 'CapBnd', 'CapAmb', 'NoNewPrivs', 'Seccomp',
         'Groups'].includes(k)) out[k] = v.trim();
  }
  return out;
}

const idMap = (name) => fs.readFileSync(`/proc/self/${name}`, 'utf8').trim().split('\n')
  .map((l) => l.trim().split(/\s+/).map(Number));

exports.handler = async (event) => {
  const r = { runtime: 'node' };
  r.uid_map = idMap('uid_map');
  r.gid_map = idMap('gid_map');
  r.status = status();
  r.proc_writable = procWritable();
  r.sysctl_writes = {};
  for (const [p, v] of Object.entries(SYSCTLS)) r.sysctl_writes[p] = tryWrite(p, v);
  r.connects = {};
  for (const [h, p] of event.targets || []) r.connects[`${h}:${p}`] = await connect(h, p, 2000);
  for (const name of event.abstract || []) {
    r.connects[`@${name}`] = await new Promise((resolve) => {
      const s = net.connect({ path: `\0${name}` });
      s.setTimeout(2000, () => { s.destroy(); resolve('timeout'); });
      s.on('connect', () => { s.destroy(); resolve('connected'); });
      s.on('error', (e) => resolve(e.code || String(e)));
    });
  }
  r.outbound = {};
  for (const [h, p] of event.outbound || []) r.outbound[`${h}:${p}`] = await connect(h, p, 5000);
  r.listening = listening();
  r.host_paths = {};
  for (const p of HOST_PATHS.concat(event.host_paths || [])) {
    let exists = true;
    try { fs.lstatSync(p); } catch { exists = false; }
    r.host_paths[p] = exists;
  }
  r.ro_writes = {};
  for (const p of RO_PATHS) r.ro_writes[p] = tryWrite(p, 'x');
  r.tmp_write = tryWrite('/tmp/probe', 'x');
  r.syscalls = JSON.parse(execFileSync('/usr/bin/python3', ['/var/task/probe.py', '--syscalls'],
                                       { encoding: 'utf8' }));
  return r;
};
