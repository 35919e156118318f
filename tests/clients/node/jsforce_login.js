// jsforce 3 on its OAuth2 password path (`oauth2: {loginUrl, clientId, clientSecret}` +
// `conn.login`), then one REST call at the instance URL the login returned.
//
// jsforce 3.10.16 reads the proxy from HTTPS_PROXY itself; Node reads grantshift's CA from
// NODE_EXTRA_CA_CERTS. Run by tests/real_clients.rs with NODE_PATH pointing at the
// node_modules scripts/test installed; prints one JSON line (see tests/common/clients.rs).
"use strict";

const fs = require("fs");
const path = require("path");
const jsforce = require("jsforce");

const [loginUrl, apiVersion] = process.argv.slice(2);
const jsforceVersion = JSON.parse(
  fs.readFileSync(path.join(path.dirname(require.resolve("jsforce")), "package.json"), "utf8"),
).version;

async function main() {
  const conn = new jsforce.Connection({
    oauth2: {
      loginUrl,
      clientId: process.env.GS_CLIENT_ID,
      clientSecret: process.env.GS_CLIENT_SECRET,
    },
    version: apiVersion,
  });
  const user = await conn.login(process.env.GS_USERNAME, process.env.GS_PASSWORD);
  const data = await conn.request(`/services/data/v${apiVersion}/sobjects/Account`);
  console.log(
    JSON.stringify({
      client: `jsforce/${jsforceVersion}`,
      access_token: conn.accessToken,
      instance_url: conn.instanceUrl,
      user_id: user.id,
      organization_id: user.organizationId,
      data_status: 200,
      data_body: JSON.stringify(data),
    }),
  );
}

main().catch((err) => {
  console.error(`jsforce failed: ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
