// jsforce 3 on its OAuth2 password path (`oauth2: {loginUrl, clientId, clientSecret}` +
// `conn.login`), then one REST call at the instance URL the login returned.
//
// jsforce 3.10.16 reads the proxy from HTTPS_PROXY itself; Node reads grantshift's CA from
// NODE_EXTRA_CA_CERTS. Run by tests/real_clients.rs with NODE_PATH pointing at the
// node_modules scripts/test installed; prints one JSON line (see tests/common/clients.rs).
// Usage: jsforce_login.js LOGIN_URL API_VERSION [--logins N [--logout]]
//
// With --logins N (N > 1) it logs in N times, each with a new Connection (as N separate
// programs would), and makes the REST call with each session; it prints one JSON line
// {"client", "sessions": [...]}, one object per login with the fields access_token,
// instance_url, data_status, data_body. With --logout as well, the first connection then calls
// `conn.logout()` (for an OAuth2 session jsforce POSTs `token=<access token>` to
// LOGIN_URL/services/oauth2/revoke), recorded as `logout` ("ok" or the error); the last
// connection makes its REST call again (`after_logout`: the fields of a session, its token
// read after the call, as jsforce silently logs in again on a 401; or `error`); and one more
// new Connection logs in and makes the REST call (`fresh`: the fields of a session). See
// tests/it/token_cache_clients.rs.
//
// With GS_EXTRA=1 it then also POSTs 1 MiB of random bytes (application/octet-stream) to
// LOGIN_URL/echo and GETs LOGIN_URL/bytes?n=65536. Those go through the connection's own
// transport, `conn._transport.httpRequest` (node-fetch 2 + https-proxy-agent from HTTPS_PROXY,
// HTTP/1.1 only), the same call jsforce's OAuth2 login and SOAP logout make: the public
// `conn.request` would also send them that way but hides the status code and response headers
// (it resolves to the parsed body) and adds the Bearer token. They run even when the login
// fails; a login that throws is then recorded as `login_error` instead of ending the program.
"use strict";

const crypto = require("crypto");
const fs = require("fs");
const path = require("path");
const jsforce = require("jsforce");

const positional = [];
let logins = 1;
let logout = false;
for (let args = process.argv.slice(2); args.length > 0; ) {
  const arg = args.shift();
  if (arg === "--logins") {
    logins = Number(args.shift());
  } else if (arg === "--logout") {
    logout = true;
  } else {
    positional.push(arg);
  }
}
const [loginUrl, apiVersion] = positional;
const jsforceVersion = JSON.parse(
  fs.readFileSync(path.join(path.dirname(require.resolve("jsforce")), "package.json"), "utf8"),
).version;
const extra = process.env.GS_EXTRA === "1";
const ECHO_LEN = 1024 * 1024;
const GET_LEN = 65536;

const sha256 = (buf) => crypto.createHash("sha256").update(buf).digest("hex");
const describe = (err) => (err && err.stack ? err.stack : String(err));

async function loginAndRestCall(conn, result) {
  const user = await conn.login(process.env.GS_USERNAME, process.env.GS_PASSWORD);
  result.access_token = conn.accessToken;
  result.instance_url = conn.instanceUrl;
  result.user_id = user.id;
  result.organization_id = user.organizationId;
  const data = await conn.request(`/services/data/v${apiVersion}/sobjects/Account`);
  result.data_status = 200;
  result.data_body = JSON.stringify(data);
}

async function extraSteps(conn, result) {
  const payload = crypto.randomBytes(ECHO_LEN);
  result.echo_sent_sha256 = sha256(payload);
  try {
    const echo = await conn._transport.httpRequest({
      method: "POST",
      url: `${loginUrl}/echo`,
      body: payload,
      // What conn.request's beforeSend would set for a body of known size.
      headers: { "Content-Type": "application/octet-stream", "Content-Length": String(ECHO_LEN) },
    });
    result.echo_status = echo.statusCode;
    result.echo_body = echo.body;
  } catch (err) {
    result.echo_error = describe(err);
  }
  try {
    // latin1: jsforce reads the body into a string with this encoding; latin1 maps bytes 1:1.
    const got = await conn._transport.httpRequest(
      { method: "GET", url: `${loginUrl}/bytes?n=${GET_LEN}` },
      { encoding: "latin1" },
    );
    result.get_status = got.statusCode;
    result.get_sha256 = sha256(Buffer.from(got.body, "latin1"));
    result.get_x_sha256 = got.headers["x-sha256"];
  } catch (err) {
    result.get_error = describe(err);
  }
}

const newConnection = () =>
  new jsforce.Connection({
    oauth2: {
      loginUrl,
      clientId: process.env.GS_CLIENT_ID,
      clientSecret: process.env.GS_CLIENT_SECRET,
    },
    version: apiVersion,
  });

// The --logins mode: N sessions, then (with --logout) the first one logs out.
async function manyLogins(result) {
  const conns = [];
  result.sessions = [];
  for (let i = 0; i < logins; i++) {
    const conn = newConnection();
    const session = {};
    await loginAndRestCall(conn, session);
    conns.push(conn);
    result.sessions.push(session);
  }
  if (!logout) {
    return;
  }
  try {
    await conns[0].logout();
    result.logout = "ok";
  } catch (err) {
    result.logout = describe(err);
  }
  const last = conns[conns.length - 1];
  result.after_logout = {};
  try {
    const data = await last.request(`/services/data/v${apiVersion}/sobjects/Account`);
    result.after_logout.data_status = 200;
    result.after_logout.data_body = JSON.stringify(data);
    // jsforce logs in again by itself on a 401 (its refresh delegate, set by login()): the
    // token the connection holds afterwards says whether it had to.
    result.after_logout.access_token = last.accessToken;
    result.after_logout.instance_url = last.instanceUrl;
  } catch (err) {
    result.after_logout.error = describe(err);
  }
  result.fresh = {};
  await loginAndRestCall(newConnection(), result.fresh);
}

async function main() {
  const conn = newConnection();
  const result = { client: `jsforce/${jsforceVersion}` };
  if (logins > 1) {
    await manyLogins(result);
  } else if (extra) {
    try {
      await loginAndRestCall(conn, result);
    } catch (err) {
      result.login_error = describe(err);
    }
    await extraSteps(conn, result);
  } else {
    await loginAndRestCall(conn, result);
  }
  console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(`jsforce failed: ${describe(err)}`);
  process.exit(1);
});
