"""simple-salesforce on its OAuth password-grant path, then one REST call.

simple-salesforce 1.12.10 posts `grant_type=password` to
https://{domain}.salesforce.com/services/oauth2/token only when it gets consumer_key and
consumer_secret and no security_token (with a security_token it uses SOAP login()). Its
requests.Session honours HTTPS_PROXY and REQUESTS_CA_BUNDLE. Run by tests/real_clients.rs;
prints one JSON line (see tests/common/clients.rs). Usage:
simple_salesforce_login.py API_VERSION [LOGIN_URL] [--logins N]  (LOGIN_URL:
https://login.salesforce.com, what domain="login" logs in at; only the GS_EXTRA steps use it).

With --logins N (N > 1) it logs in N times in a row, each a new `Salesforce(...)` (its own
requests.Session, as N separate programs would), and makes the REST call with each session; it
prints one JSON line {"client", "sessions": [...]}, one object per login with the fields
access_token, instance_url, data_status, data_body (tests/it/token_cache_clients.rs).

With GS_EXTRA=1 it then also runs gs_extra's steps (a 1 MiB POST to LOGIN_URL/echo, a GET of
LOGIN_URL/bytes?n=65536) on the Salesforce object's own `sf.session` (a requests.Session),
or, when the login failed, on a fresh requests.Session with the same environment; a login
that raises is then recorded as `login_error` instead of ending the program.
"""

import argparse
import json
import os
import sys
from importlib.metadata import version

import requests
from simple_salesforce import Salesforce

# -I (isolated) leaves the script's directory off sys.path; gs_extra lives next to it (and
# no __pycache__ is to be written into tests/clients).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import gs_extra  # noqa: E402

parser = argparse.ArgumentParser()
parser.add_argument("api_version")
parser.add_argument("login_url", nargs="?", default="https://login.salesforce.com")
parser.add_argument("--logins", type=int, default=1)
args = parser.parse_args()
api_version = args.api_version
login_url = args.login_url


def login_and_rest_call(result, logged_in):
    sf = Salesforce(
        username=os.environ["GS_USERNAME"],
        password=os.environ["GS_PASSWORD"],
        consumer_key=os.environ["GS_CLIENT_ID"],
        consumer_secret=os.environ["GS_CLIENT_SECRET"],
        domain="login",
        version=api_version,
    )
    logged_in.append(sf)
    # The login's response stays inside simple-salesforce; later ones are seen by this hook.
    versions = []
    sf.session.hooks["response"].append(
        lambda r, *args, **kwargs: versions.append(gs_extra.http_version(r))
    )
    result["access_token"] = sf.session_id
    result["instance_url"] = f"https://{sf.sf_instance}"
    data = sf.restful("sobjects/Account")
    result["data_status"] = 200
    if versions:
        result["data_http_version"] = versions[-1]
    result["data_body"] = json.dumps(data)


result = {"client": f"simple-salesforce/{version('simple-salesforce')}"}
if args.logins > 1:
    sessions = []
    for _ in range(args.logins):
        session = {}
        login_and_rest_call(session, [])
        sessions.append(session)
    result["sessions"] = sessions
elif gs_extra.enabled():
    logged_in = []
    try:
        login_and_rest_call(result, logged_in)
    except Exception as e:  # recorded; the extra steps do not need the token
        result["login_error"] = repr(e)
    session = logged_in[0].session if logged_in else requests.Session()
    gs_extra.run_extra_steps(session, login_url, result)
else:
    login_and_rest_call(result, [])
print(json.dumps(result))
