"""One HTTP request to a trapline API (the coordinator's /api/v1/, the panel's), for the tests
and scripts/stack.py. Python 3 stdlib only."""

import json
import urllib.error
import urllib.request


def api_call(base_url: str, method: str, path: str, body=None, token=None, raw=None,
             headers=None, timeout: float = 20):
    """One HTTP request to a trapline API: `body` is sent as JSON (`raw`, text or bytes, as it
    is), `token` as a bearer token, `headers` as given. Returns (status, the answer parsed as
    JSON when it says it is JSON, else its text, the answer's headers); an HTTP error status is
    an answer, not an exception."""
    data = raw.encode() if isinstance(raw, str) else raw
    if body is not None:
        data = json.dumps(body).encode()
    req = urllib.request.Request(base_url.rstrip("/") + path, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            status, text, hdrs = res.status, res.read().decode(), res.headers
    except urllib.error.HTTPError as e:
        status, text, hdrs = e.code, e.read().decode(), e.headers
    ctype = hdrs.get("content-type", "")
    out = json.loads(text) if ctype.startswith("application/json") and text else text
    return status, out, hdrs
