"""tierstack-origin for the tests: starting the binary, its control API
(``/_origin/...`` on the api host), and a writable source over its store
(``<api>/store``).

tests/run-python builds the origin and hands its path over in
``TIERSTACK_ORIGIN_BIN``."""

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Optional

import tierstack


class Origin:
    """The running origin and its control API."""

    def __init__(self, process: "subprocess.Popen[bytes]", urls: Dict[str, str]) -> None:
        self.process = process
        self.api: str = urls["api"]
        self.raw: str = urls["raw"]
        self.other: str = urls["other"]
        self.store: str = f"{self.api}/store"

    def _call(self, method: str, action: str, body: Optional[Dict[str, Any]] = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            f"{self.api}/_origin/{action}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def post(self, action: str, body: Optional[Dict[str, Any]] = None) -> None:
        assert self._call("POST", action, body if body is not None else {}) == {"ok": True}

    def fault(self, **fault: Any) -> None:
        self.post("fault", fault)

    def requests(self) -> List[Dict[str, Any]]:
        log = self._call("GET", "requests")
        assert log["count"] == len(log["requests"])
        return log["requests"]  # type: ignore[no-any-return]

    def count(self) -> int:
        return len(self.requests())

    def deliveries(self) -> Dict[str, Any]:
        """``{"count", "attempts", "duplicates", "deliveries": [{"key",
        "idempotency_key", "value", "value_base64", "seq"}]}``."""
        found = self._call("GET", "deliveries")
        assert found["count"] == len(found["deliveries"])
        return found  # type: ignore[no-any-return]


def start(binary: Optional[str]) -> Iterator[Origin]:
    """Runs the origin for as long as the generator is open."""
    if not binary:
        raise RuntimeError("TIERSTACK_ORIGIN_BIN is not set: run tests/run-python, which builds tierstack-origin")
    # stdin stays an open pipe: the origin serves until it reads end of file.
    process = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None and process.stdin is not None
    line = process.stdout.readline()
    assert line, f"tierstack-origin exited with {process.wait(timeout=10)} before printing its URLs"
    yield Origin(process, json.loads(line))
    process.stdin.close()
    assert process.wait(timeout=10) == 0


def from_env() -> Iterator[Origin]:
    return start(os.environ.get("TIERSTACK_ORIGIN_BIN"))


class OriginStore:
    """A writable source over the origin's store, with urllib: ``load`` is
    ``GET <store>/<key>`` (404: not found), ``store`` a ``PUT`` of the value
    and ``remove`` a ``DELETE``, each with the write's ``Idempotency-Key``.
    A failed request raises ``urllib.error.HTTPError``."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _request(self, method: str, key: str, idempotency_key: Optional[str] = None, data: Optional[bytes] = None) -> bytes:
        headers = {} if idempotency_key is None else {"Idempotency-Key": idempotency_key}
        url = f"{self.url}/{urllib.parse.quote(key, safe='')}"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()  # type: ignore[no-any-return]

    def load(self, key: str) -> Any:
        try:
            return self._request("GET", key)
        except urllib.error.HTTPError as err:
            if err.code == 404:
                return tierstack.NOT_FOUND
            raise

    def store(self, key: str, value: bytes, idempotency_key: str) -> None:
        self._request("PUT", key, idempotency_key, value)

    def remove(self, key: str, idempotency_key: str) -> None:
        self._request("DELETE", key, idempotency_key)
