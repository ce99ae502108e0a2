/*
 * itsm-connector push: tell the connector "read this change again", seconds after it is saved.
 * The connector re-reads the record through the Table API with its own credentials; nothing in the
 * hint is shown, stored or trusted. Installation and tests: docs/push.md in the connector's repo.
 *
 * What to create on the instance (global scope; for a scoped app see docs/push.md):
 *
 *   1. System properties (System Properties > All Properties > New), readable by admin only:
 *        itsm_connector.hint.url      https://connector.example.net:9465/hooks/servicenow/acme
 *        itsm_connector.hint.secret   the source's hook_secret (64 hex digits: openssl rand -hex 32)
 *        itsm_connector.hint.auth     hmac (default) or bearer
 *        itsm_connector.hint.mid      name of a MID Server to send through, or empty (direct)
 *
 *   2. Script Include  Name: ItsmConnectorHint   Accessible from: All application scopes
 *      Script: the class below (from "var ItsmConnectorHint" to the end of its prototype).
 *
 *   3. Business Rules (Advanced ticked). The scripts are the three functions at the end of this file.
 *        a. "itsm-connector hint: change"   Table change_request   When async   Insert, Update
 *           Order 1000. Condition: optional, e.g. the connector's filter (fewer hints, same result).
 *        b. "itsm-connector hint: affected CI"   Table task_ci   When async   Insert, Update
 *           Condition: current.task.sys_class_name == 'change_request'
 *        c. "itsm-connector hint: affected CI removed"   Table task_ci   When after   Delete
 *           Condition: current.task.sys_class_name == 'change_request'
 *           (after, not async: what `current` holds in an async delete rule is not documented)
 *
 * Never retried here: a hint that is lost costs only latency, the connector's poll catches up.
 */

var ItsmConnectorHint = Class.create();
ItsmConnectorHint.prototype = {
    initialize: function () {
        this.url = gs.getProperty('itsm_connector.hint.url', '');
        this.secret = gs.getProperty('itsm_connector.hint.secret', '');
        this.auth = gs.getProperty('itsm_connector.hint.auth', 'hmac');
        this.mid = gs.getProperty('itsm_connector.hint.mid', '');
    },

    /*
     * table: 'change_request', or 'task_ci' (then changeSysId is the row's parent change, `task`).
     * wait: false sends without waiting for the answer (the after-delete rule: the user's save is
     * not held up). Returns the HTTP status (202: queued), or 0 when nothing could be sent.
     */
    send: function (table, sysId, changeSysId, wait) {
        var what = table + ' ' + sysId;
        if (!this.url || !this.secret) {
            gs.warn('itsm-connector hint for ' + what + ' not sent: itsm_connector.hint.url/secret not set');
            return 0;
        }
        // nonce: two hints for one record in the same millisecond must differ, or the second is
        // refused as a replay of the first
        var hint = { table: table, sys_id: String(sysId), nonce: String(Math.random()).slice(2) };
        if (table == 'task_ci') {
            hint.task = String(changeSysId);
        }
        var body = JSON.stringify(hint); // ASCII only: ids, table names, digits
        try {
            var request = new sn_ws.RESTMessageV2();
            request.setEndpoint(this.url);
            request.setHttpMethod('post');
            request.setHttpTimeout(5000); // a socket read timeout: no data for 5 s
            request.setRequestHeader('Content-Type', 'application/json');
            if (this.auth == 'bearer') {
                request.setRequestHeader('Authorization', 'Bearer ' + this.secret);
            } else {
                var stamp = String(new Date().getTime()); // Unix time in milliseconds
                request.setRequestHeader('X-ITSM-Timestamp', stamp);
                request.setRequestHeader('X-ITSM-Signature', 'v1=' + this.mac(stamp + '.' + body));
            }
            request.setRequestBody(body);
            if (this.mid) {
                request.setMIDServer(this.mid); // every request through a MID Server is asynchronous
            }
            if (wait === false) {
                request.executeAsync();
                return 202;
            }
            var response = this.mid ? request.executeAsync() : request.execute();
            if (this.mid) {
                response.waitForResponse(60);
            }
            var status = response.getStatusCode();
            if (status != 202) {
                var error = response.haveError() ? ' (' + response.getErrorMessage() + ')' : '';
                gs.warn('itsm-connector hint for ' + what + ': HTTP ' + status + error);
            }
            return status;
        } catch (ex) {
            gs.warn('itsm-connector hint for ' + what + ' not sent: ' + (ex.getMessage ? ex.getMessage() : ex));
            return 0;
        }
    },

    /* Base64 HMAC-SHA256 of data under the secret (generateMac takes the key Base64-encoded). */
    mac: function (data) {
        if (typeof GlideCertificateEncryption != 'undefined') { // global scope
            return new GlideCertificateEncryption().generateMac(
                GlideStringUtil.base64Encode(this.secret), 'HmacSHA256', data);
        }
        return new CertificateEncryption().generateMac(gs.base64Encode(this.secret), 'HmacSHA256', data);
    },

    type: 'ItsmConnectorHint'
};

/* -- Business Rule a: change_request, async, insert + update -------------------------------- */
(function executeRule(current, previous /* null in an async rule */) {
    new ItsmConnectorHint().send('change_request', current.getUniqueValue());
})(current, previous);

/* -- Business Rule b: task_ci, async, insert + update ----------------------------------------- */
(function executeRule(current, previous) {
    new ItsmConnectorHint().send('task_ci', current.getUniqueValue(), current.getValue('task'));
})(current, previous);

/* -- Business Rule c: task_ci, after, delete --------------------------------------------------- */
(function executeRule(current, previous) {
    new ItsmConnectorHint().send('task_ci', current.getUniqueValue(), current.getValue('task'), false);
})(current, previous);
