// Loaded into NNI 3.0's manager (Node.js) with NODE_OPTIONS=--require, before its main.js.
//
// NNI 3.0 serves its web UI and REST API with `app.listen(port)`: every interface, no login,
// and a catch-all 404 that prints the secret URL prefix to whoever asks. NNI has no setting
// for either, so this file (funcapprox.nni.launch starts the manager with it) makes:
// - a server that listens on the manager's port with no address listen on loopback
//   (127.0.0.1 and ::1) and on the addresses in FUNCAPPROX_LISTEN (a remote experiment's
//   nniManagerIp), never on every interface;
// - every request or WebSocket upgrade outside the prefix a bare 404 that does not name it;
// - the prefix come from FUNCAPPROX_URL_PREFIX instead of the command line, where every
//   local user could read it in /proc/PID/cmdline.
// It removes its variables (NODE_OPTIONS included) from the environment the manager's
// tuner and trials inherit.
'use strict';

const http = require('http');
const net = require('net');

const prefix = process.env.FUNCAPPROX_URL_PREFIX || '';
const extraAddresses = (process.env.FUNCAPPROX_LISTEN || '').split(',').filter(Boolean);
delete process.env.FUNCAPPROX_URL_PREFIX;
delete process.env.FUNCAPPROX_LISTEN;
delete process.env.NODE_OPTIONS;

if (prefix) {
  process.argv.push('--url-prefix', prefix); // NNI's arguments.js parses process.argv after this file ran
}
const portIndex = process.argv.indexOf('--port');
const managerPort = portIndex > 0 ? Number(process.argv[portIndex + 1]) : NaN;

function insidePrefix(url) {
  const path = String(url || '').split('?')[0];
  return path === '/' + prefix || path.startsWith('/' + prefix + '/');
}

const guarded = Symbol('funcapprox: requests outside the URL prefix get a bare 404');

const originalEmit = http.Server.prototype.emit;
http.Server.prototype.emit = function (event, request, responseOrSocket, ...rest) {
  if (this[guarded] && (event === 'request' || event === 'upgrade') && !insidePrefix(request.url)) {
    if (event === 'request') {
      responseOrSocket.writeHead(404, { 'Content-Type': 'text/plain', 'Content-Length': '9' });
      responseOrSocket.end('Not Found');
    } else {
      responseOrSocket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
    }
    return true;
  }
  return originalEmit.call(this, event, request, responseOrSocket, ...rest);
};

// listen(port), listen(port, callback), listen(port, undefined, …), listen({port}): "every interface".
function portOnly(args) {
  if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
    return args[1] === undefined || args[1] === null || typeof args[1] === 'function' ? Number(args[0]) : null;
  }
  if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && !args[0].host && !args[0].path) {
    return Number(args[0].port);
  }
  return null;
}

const originalListen = http.Server.prototype.listen;
http.Server.prototype.listen = function (...args) {
  const port = portOnly(args);
  if (port === null) {
    return originalListen.apply(this, args);
  }
  const callback = args.find((a) => typeof a === 'function');
  if (prefix && port === managerPort) {
    this[guarded] = true;
  }
  // One http.Server, more listening sockets: each extra one hands its connections over.
  const server = this;
  const extras = ['::1', ...extraAddresses].map((address) => {
    const extra = net.createServer((socket) => server.emit('connection', socket));
    extra.on('error', (error) => {
      if (address === '::1' && ['EADDRNOTAVAIL', 'EAFNOSUPPORT'].includes(error.code)) {
        return; // no IPv6 loopback on this machine: 127.0.0.1 serves alone
      }
      server.emit('error', error);
    });
    return { address, extra };
  });
  this.once('listening', () => {
    const bound = this.address().port; // the real port when asked for port 0
    for (const { address, extra } of extras) {
      extra.listen(bound, address);
    }
  });
  this.once('close', () => extras.forEach(({ extra }) => extra.close()));
  return originalListen.call(this, port, '127.0.0.1', ...(callback ? [callback] : []));
};
