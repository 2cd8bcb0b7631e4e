"""Discord notifications: alert rules routed into a MySQL outbox, drained within Discord's limits.

``rules`` (what a rule is, its checks and the routing index), ``rulebook`` (every worker's copy
of the rules topic), ``notifier`` (the service: queueing and the send loop), ``ledger`` (the
delivery ledger's SQL), ``lock`` (one sender per database), ``webhook`` (URL, answers, the
rate-limited client) and ``embeds`` (messages within Discord's limits).
"""
