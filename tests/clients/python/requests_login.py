"""A password-grant login with Python `requests`, then one REST call with the token it got.

Run by tests/real_clients.rs with the venv of scripts/test. The proxy comes from HTTPS_PROXY
and grantshift's CA from REQUESTS_CA_BUNDLE, as an operator would set them; the credentials
come from GS_* environment variables. Prints one JSON line (see tests/common/clients.rs).
Usage: requests_login.py LOGIN_URL API_PATH

With GS_EXTRA=1 it then also runs gs_extra's steps (a 1 MiB POST to LOGIN_URL/echo, a GET of
LOGIN_URL/bytes?n=65536) with requests; they run even when the login fails, and a login that
raises is then recorded as `login_error` instead of ending the program.
"""

import json
import os
import sys

import requests

# -I (isolated) leaves the script's directory off sys.path; gs_extra lives next to it (and
# no __pycache__ is to be written into tests/clients).
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import gs_extra  # noqa: E402

login_url = sys.argv[1]
api_path = sys.argv[2]


def login_and_rest_call(result):
    token = requests.post(
        f"{login_url}/services/oauth2/token",
        data={
            "grant_type": "password",
            "client_id": os.environ["GS_CLIENT_ID"],
            "client_secret": os.environ["GS_CLIENT_SECRET"],
            "username": os.environ["GS_USERNAME"],
            "password": os.environ["GS_PASSWORD"],
        },
        timeout=20,
    )
    result["token_status"] = token.status_code
    result["token_http_version"] = gs_extra.http_version(token)
    result["token_body"] = token.text
    if token.status_code == 200:
        body = token.json()
        result["access_token"] = body["access_token"]
        result["instance_url"] = body["instance_url"]
        data = requests.get(
            f"{body['instance_url']}{api_path}",
            headers={"Authorization": f"Bearer {body['access_token']}"},
            timeout=20,
        )
        result["data_status"] = data.status_code
        result["data_http_version"] = gs_extra.http_version(data)
        result["data_body"] = data.text


result = {"client": f"requests/{requests.__version__}"}
if gs_extra.enabled():
    try:
        login_and_rest_call(result)
    except Exception as e:  # recorded; the extra steps do not need the token
        result["login_error"] = repr(e)
    gs_extra.run_extra_steps(requests, login_url, result)
else:
    login_and_rest_call(result)
print(json.dumps(result))
