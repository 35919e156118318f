"""simple-salesforce on its SOAP login() path, then one REST call.

simple-salesforce 1.12.10 with username, password and security_token (no consumer key) POSTs
a partner `login` envelope to https://login.salesforce.com/services/Soap/u/API_VERSION and
takes sessionId and serverUrl from the answer; the REST call then goes to serverUrl's host
with the session as Bearer token. Through grantshift: HTTPS_PROXY + REQUESTS_CA_BUNDLE;
straight at the fake: GS_CONNECT_TO (see gs_connect_to.py) + REQUESTS_CA_BUNDLE.
Credentials from GS_USERNAME, GS_PASSWORD, GS_SECURITY_TOKEN. Usage:
simple_salesforce_soap_login.py API_VERSION. Prints one JSON line: client, access_token,
instance_url, data_status, data_body, or login_error (the exception) if login() raised.
"""

import json
import os
import sys
from importlib.metadata import version

# -I (isolated) leaves the script's directory off sys.path.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import gs_connect_to  # noqa: E402,F401  (routes connections when GS_CONNECT_TO is set)
from simple_salesforce import Salesforce  # noqa: E402

api_version = sys.argv[1]
result = {"client": f"simple-salesforce/{version('simple-salesforce')}"}
try:
    sf = Salesforce(
        username=os.environ["GS_USERNAME"],
        password=os.environ["GS_PASSWORD"],
        security_token=os.environ["GS_SECURITY_TOKEN"],
        domain="login",
        version=api_version,
    )
except Exception as e:  # a SOAP fault: SalesforceAuthenticationFailed(code, message)
    code = getattr(e, "code", None)
    detail = getattr(e, "message", None) if code is not None else None
    result["login_error"] = f"{type(e).__name__}: {code}: {detail}" if code else repr(e)
else:
    result["access_token"] = sf.session_id
    result["instance_url"] = f"https://{sf.sf_instance}"
    data = sf.restful("sobjects/Account")
    result["data_status"] = 200
    result["data_body"] = json.dumps(data)
print(json.dumps(result))
