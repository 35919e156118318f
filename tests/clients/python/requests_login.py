"""A password-grant login with Python `requests`, then one REST call with the token it got.

Run by tests/real_clients.rs with the venv of scripts/test. The proxy comes from HTTPS_PROXY
and grantshift's CA from REQUESTS_CA_BUNDLE, as an operator would set them; the credentials
come from GS_* environment variables. Prints one JSON line (see tests/common/clients.rs).
"""

import json
import os
import sys

import requests

login_url = sys.argv[1]
api_path = sys.argv[2]

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
result = {
    "client": f"requests/{requests.__version__}",
    "token_status": token.status_code,
    "token_body": token.text,
}
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
    result["data_body"] = data.text
print(json.dumps(result))
