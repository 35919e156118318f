"""The GS_EXTRA=1 steps the Python client programs share (see tests/common/clients.rs).

`run_extra_steps(http, login_url, result)` POSTs 1 MiB of random bytes
(application/octet-stream, Content-Length) to LOGIN_URL/echo and GETs
LOGIN_URL/bytes?n=65536 with `http`: the `requests` module itself or a `requests.Session`
(anything with requests' `post`/`get`). It records into `result`: echo_status,
echo_http_version, echo_sent_sha256, echo_body, get_status, get_http_version, get_sha256,
get_x_sha256; an exception in a step is recorded as echo_error / get_error instead.
"""

import hashlib
import os

ECHO_LEN = 1024 * 1024
GET_LEN = 65536


def enabled():
    return os.environ.get("GS_EXTRA") == "1"


def http_version(response):
    """The HTTP version urllib3 read `response` with (requests speaks HTTP/1.1 only)."""
    version = getattr(response.raw, "version", None)
    return {9: "HTTP/0.9", 10: "HTTP/1.0", 11: "HTTP/1.1", 20: "HTTP/2"}.get(version, str(version))


def run_extra_steps(http, login_url, result):
    payload = os.urandom(ECHO_LEN)
    result["echo_sent_sha256"] = hashlib.sha256(payload).hexdigest()
    try:
        echo = http.post(
            f"{login_url}/echo",
            data=payload,
            headers={"Content-Type": "application/octet-stream"},
            timeout=60,
        )
        result["echo_status"] = echo.status_code
        result["echo_http_version"] = http_version(echo)
        result["echo_body"] = echo.text
    except Exception as e:  # recorded for the test to report
        result["echo_error"] = repr(e)
    try:
        got = http.get(f"{login_url}/bytes?n={GET_LEN}", timeout=60)
        result["get_status"] = got.status_code
        result["get_http_version"] = http_version(got)
        result["get_sha256"] = hashlib.sha256(got.content).hexdigest()
        result["get_x_sha256"] = got.headers.get("x-sha256")
    except Exception as e:
        result["get_error"] = repr(e)
