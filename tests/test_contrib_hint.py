"""The shipped Business Rule script (``contrib/servicenow/itsm_connector_hint.js``) signs what the
connector checks: the script runs in node with stand-ins for the ServiceNow APIs it calls
(``GlideCertificateEncryption.generateMac`` is HMAC-SHA256 under the Base64-decoded key, returning
Base64, as documented), and each request it would send goes to the real hook listener over HTTP."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.push_harness import SECRET, desk
from tests.support import wait_for
from tests.test_hooks import BODY, KEY, STAMP, VECTOR

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
]

SCRIPT = Path(__file__).resolve().parent.parent / "contrib" / "servicenow" / "itsm_connector_hint.js"
STANDINS = """
const crypto = require('crypto'), fs = require('fs'), vm = require('vm');
const [props, change] = JSON.parse(process.argv[1]);
const sent = [], warned = [];
const b64 = (s) => Buffer.from(s, 'utf8').toString('base64');
function generateMac(key, algorithm, data) {
  if (algorithm !== 'HmacSHA256') throw new Error('algorithm ' + algorithm);
  return crypto.createHmac('sha256', Buffer.from(key, 'base64')).update(data, 'utf8').digest('base64');
}
function RESTMessageV2() {
  const r = { headers: {} };
  const response = { getStatusCode: () => 202, haveError: () => false, waitForResponse: () => {} };
  Object.assign(this, {
    setEndpoint: (u) => (r.url = u), setHttpMethod: (m) => (r.method = m),
    setHttpTimeout: (t) => (r.timeout = t), setRequestHeader: (k, v) => (r.headers[k] = v),
    setRequestBody: (b) => (r.body = b),
    setMIDServer: (m) => (r.mid = m),
    execute: () => { sent.push(r); return response; }, executeAsync: () => { sent.push(r); return response; },
  });
}
const context = {
  gs: { getProperty: (k, d) => (k in props ? props[k] : d), warn: (m) => warned.push(m), base64Encode: b64 },
  GlideStringUtil: { base64Encode: b64 },
  GlideCertificateEncryption: function () { this.generateMac = generateMac; },
  sn_ws: { RESTMessageV2 },
  Class: { create: () => function () { this.initialize.apply(this, arguments); } },
  current: { getUniqueValue: () => change, getValue: (field) => (field === 'task' ? change : '') },
  previous: null,
};
vm.createContext(context);
vm.runInContext(fs.readFileSync(process.argv[2], 'utf8'), context);
if (props.vector) {
  const [key, data] = props.vector;
  const mac = new context.GlideCertificateEncryption();
  sent.push(mac.generateMac(context.GlideStringUtil.base64Encode(key), 'HmacSHA256', data));
}
console.log(JSON.stringify({ sent, warned }));
"""


def run_script(props: dict[str, Any], change: str) -> dict[str, Any]:
    done = subprocess.run(
        ["node", "-e", STANDINS, json.dumps([props, change]), str(SCRIPT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_the_documented_vector_is_what_generate_mac_gives() -> None:
    out = run_script({"vector": [KEY, f"{STAMP}.{BODY.decode()}"]}, "x")
    assert out["sent"][-1] == VECTOR


@pytest.mark.parametrize("auth", ["hmac", "bearer"])
def test_every_request_the_business_rules_send_is_accepted(tmp_path: Path, auth: str) -> None:
    with desk(tmp_path, auth=auth) as d:
        change = d.snow.records("change_request")[0]["sys_id"]
        props = {
            "itsm_connector.hint.url": d.url,
            "itsm_connector.hint.secret": SECRET,
            "itsm_connector.hint.auth": auth,
        }
        out = run_script(props, change)
        assert out["warned"] == []
        sent = out["sent"]
        assert [json.loads(r["body"])["table"] for r in sent] == ["change_request", "task_ci", "task_ci"]
        assert all(r["method"] == "post" and r["url"] == d.url and r["timeout"] == 5000 for r in sent)
        d.snow.reset_requests()
        statuses = [d.post(r["body"].encode(), r["headers"]) for r in sent]
        assert statuses == [202, 202, 202]
        wait_for("the re-read", lambda: d.rereads(), 5)
        # the change, then its CIs too (the task_ci hints), in at most two paced rounds
        assert len(d.rereads()) <= 2


def test_an_unconfigured_script_warns_and_sends_nothing() -> None:
    out = run_script({}, "abc")
    assert out["sent"] == [] and len(out["warned"]) == 3
    assert "itsm_connector.hint.url/secret not set" in out["warned"][0]
