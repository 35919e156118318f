// Route connections by name without DNS, for a client run straight at the fake Salesforce.
//
// GS_CONNECT_TO="host:port=ip:port,..." (set by testkit's direct runners): every TLS
// connection (Node's https agent, under node-fetch and jsforce) to host:port then dials
// ip:port, keeping the name for SNI and the certificate check (Host is the URL's), like
// grantshift's [upstream.connect_to] or curl --connect-to. A name not listed is refused, so
// nothing leaves loopback. Unset: nothing changes (through a proxy, HTTPS_PROXY routes).
"use strict";

const tls = require("tls");

const routes = new Map();
for (const entry of (process.env.GS_CONNECT_TO || "").split(",").filter(Boolean)) {
  const [name, addr] = entry.split("=");
  const at = addr.lastIndexOf(":");
  routes.set(name.toLowerCase(), { host: addr.slice(0, at), port: Number(addr.slice(at + 1)) });
}

if (routes.size > 0) {
  const connect = tls.connect;
  tls.connect = function (...args) {
    const options = typeof args[0] === "object" ? args[0] : { port: args[0], host: args[1] };
    const name = `${String(options.host).toLowerCase()}:${options.port || 443}`;
    const route = routes.get(name);
    if (!route) {
      throw new Error(`GS_CONNECT_TO has no route for ${name}`);
    }
    const routed = { ...options, ...route, servername: options.servername || options.host };
    return connect.call(this, routed, ...args.slice(typeof args[0] === "object" ? 1 : 2));
  };
}
