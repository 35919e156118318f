"""simple-salesforce on its OAuth password-grant path, then one REST call.

simple-salesforce 1.12.10 posts `grant_type=password` to
https://{domain}.salesforce.com/services/oauth2/token only when it gets consumer_key and
consumer_secret and no security_token (with a security_token it uses SOAP login()). Its
requests.Session honours HTTPS_PROXY and REQUESTS_CA_BUNDLE. Run by tests/real_clients.rs;
prints one JSON line (see tests/common/clients.rs).
"""

import json
import os
import sys
from importlib.metadata import version

from simple_salesforce import Salesforce

api_version = sys.argv[1]

sf = Salesforce(
    username=os.environ["GS_USERNAME"],
    password=os.environ["GS_PASSWORD"],
    consumer_key=os.environ["GS_CLIENT_ID"],
    consumer_secret=os.environ["GS_CLIENT_SECRET"],
    domain="login",
    version=api_version,
)
data = sf.restful("sobjects/Account")
print(
    json.dumps(
        {
            "client": f"simple-salesforce/{version('simple-salesforce')}",
            "access_token": sf.session_id,
            "instance_url": f"https://{sf.sf_instance}",
            "data_status": 200,
            "data_body": json.dumps(data),
        }
    )
)
