// jsforce 3 on its SOAP login() path (`conn.login(user, password + token)` with no oauth2
// settings: it POSTs a partner `login` envelope to LOGIN_URL/services/Soap/u/API_VERSION), then
// one REST call at the serverUrl host with the session as Bearer token.
//
// Through grantshift: HTTPS_PROXY (jsforce reads it) + NODE_EXTRA_CA_CERTS; straight at the
// fake: GS_CONNECT_TO (see gs_connect_to.js) + NODE_EXTRA_CA_CERTS. Credentials from
// GS_USERNAME, GS_PASSWORD, GS_SECURITY_TOKEN. Usage: jsforce_soap_login.js LOGIN_URL
// API_VERSION. Prints one JSON line: client, access_token, instance_url, user_id,
// organization_id, data_status, data_body, or login_error (what login() threw).
"use strict";

require("./gs_connect_to");
const fs = require("fs");
const path = require("path");
const jsforce = require("jsforce");

const [loginUrl, apiVersion] = process.argv.slice(2);
const jsforceVersion = JSON.parse(
  fs.readFileSync(path.join(path.dirname(require.resolve("jsforce")), "package.json"), "utf8"),
).version;

async function main() {
  const result = { client: `jsforce/${jsforceVersion}` };
  const conn = new jsforce.Connection({ loginUrl, version: apiVersion });
  let user;
  try {
    user = await conn.login(
      process.env.GS_USERNAME,
      process.env.GS_PASSWORD + process.env.GS_SECURITY_TOKEN,
    );
  } catch (err) {
    result.login_error = String(err && err.message ? err.message : err);
    console.log(JSON.stringify(result));
    return;
  }
  result.access_token = conn.accessToken;
  result.instance_url = conn.instanceUrl;
  result.user_id = user.id;
  result.organization_id = user.organizationId;
  const data = await conn.request(`/services/data/v${apiVersion}/sobjects/Account`);
  result.data_status = 200;
  result.data_body = JSON.stringify(data);
  console.log(JSON.stringify(result));
}

main().catch((err) => {
  console.error(`jsforce failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
