"""Slack: the Web API edge (client and answer classification), the delivery of windows to one channel,
and what is rendered there (Block Kit, mrkdwn, locale, digest).
"""
