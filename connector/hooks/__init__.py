"""Push from ServiceNow: a signed hint ("re-read sys_id X") on a listener of its own, queued per
source and re-read through the Table API by that source's worker (see docs/push.md)."""
