"""Discord notifications: a MySQL outbox drained through one webhook within its limits.

``notifier`` (the service: queueing and the send loop), ``ledger`` (the delivery ledger's SQL),
``lock`` (one sender per database), ``webhook`` (URL, answers, the rate-limited client),
``embeds`` (messages within Discord's limits) and ``filters`` (which changes are notified).
"""
